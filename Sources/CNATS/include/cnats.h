// The C surface of the NATS C client (Debian: libnats-dev) the forwarder
// uses, plus the few helpers that are easier to write in C than to spell
// through Swift's pointer types.
#ifndef CNATS_H
#define CNATS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

/// Publishes one alert asynchronously on `js`: `subject`, `body`, and the
/// headers `Nats-Msg-Id: <epoch>-<sequence>` (formatted here, on the
/// stack: this runs once per alert) and `Secureops-Host: host`. The
/// message is owned by the library on success and destroyed here on
/// failure.
natsStatus cnats_publish_alert(jsCtx *js, const char *subject,
                               const void *body, int length,
                               const char *epoch, uint64_t sequence,
                               const char *host);

/// The sequence at the end of an alert's `Nats-Msg-Id` (`<epoch>-<sequence>`);
/// 0 when the header is missing or malformed (journal sequences start at 1).
uint64_t cnats_alert_sequence(natsMsg *msg);

/// Looks the stream up and creates it when it does not exist: subjects
/// `subjects` (one pattern), file storage, `replicas`, duplicate window
/// `duplicatesNanos`. An existing stream is used as it is. `*created` says
/// which happened.
natsStatus cnats_ensure_stream(jsCtx *js, const char *name, const char *subjects,
                               int64_t replicas, int64_t duplicatesNanos,
                               bool *created, jsErrCode *errCode);

/// A stream's message count and first and last stream sequences.
natsStatus cnats_stream_state(jsCtx *js, const char *name, uint64_t *messages,
                              uint64_t *first, uint64_t *last, jsErrCode *errCode);

/// Drops the library's list of publishes still waiting for an ack (their
/// acks, if they come, are discarded); returns how many there were.
int cnats_drop_pending(jsCtx *js);

#endif
