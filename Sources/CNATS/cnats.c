#include "cnats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

natsStatus cnats_publish_alert(jsCtx *js, const char *subject,
                               const void *body, int length,
                               const char *epoch, uint64_t sequence,
                               const char *host)
{
    char msgId[64];
    snprintf(msgId, sizeof(msgId), "%s-%llu", epoch, (unsigned long long)sequence);
    natsMsg *msg = NULL;
    natsStatus s = natsMsg_Create(&msg, subject, NULL, (const char *)body, length);
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msgId);
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Secureops-Host", host);
    if (s == NATS_OK) s = js_PublishMsgAsync(js, &msg, NULL);
    // NULL when the library took the message; a no-op then.
    natsMsg_Destroy(msg);
    return s;
}

uint64_t cnats_alert_sequence(natsMsg *msg)
{
    const char *id = NULL;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK || id == NULL) return 0;
    const char *dash = strrchr(id, '-');
    if (dash == NULL || dash[1] == '\0') return 0;
    char *end = NULL;
    unsigned long long value = strtoull(dash + 1, &end, 10);
    return (end != NULL && *end == '\0') ? (uint64_t)value : 0;
}

natsStatus cnats_ensure_stream(jsCtx *js, const char *name, const char *subjects,
                               int64_t replicas, int64_t duplicatesNanos,
                               bool *created, jsErrCode *errCode)
{
    jsStreamInfo *info = NULL;
    *created = false;
    natsStatus s = js_GetStreamInfo(&info, js, name, NULL, errCode);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(info);
        return NATS_OK;
    }
    if (s != NATS_NOT_FOUND) return s;

    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    const char *list[1] = { subjects };
    config.Name = name;
    config.Subjects = list;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = replicas;
    config.Duplicates = duplicatesNanos;
    s = js_AddStream(&info, js, &config, NULL, errCode);
    if (s == NATS_OK) {
        *created = true;
        jsStreamInfo_Destroy(info);
    }
    return s;
}

natsStatus cnats_stream_state(jsCtx *js, const char *name, uint64_t *messages,
                              uint64_t *first, uint64_t *last, jsErrCode *errCode)
{
    jsStreamInfo *info = NULL;
    natsStatus s = js_GetStreamInfo(&info, js, name, NULL, errCode);
    if (s != NATS_OK) return s;
    *messages = info->State.Msgs;
    *first = info->State.FirstSeq;
    *last = info->State.LastSeq;
    jsStreamInfo_Destroy(info);
    return NATS_OK;
}

int cnats_drop_pending(jsCtx *js)
{
    natsMsgList pending;
    memset(&pending, 0, sizeof(pending));
    if (js_PublishAsyncGetPendingList(&pending, js) != NATS_OK) return 0;
    int count = pending.Count;
    natsMsgList_Destroy(&pending);
    return count;
}
