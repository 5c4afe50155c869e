// The anchor for the JetStream forwarder's throughput: libnats alone,
// publishing N 256-byte messages asynchronously to the same kind of stream
// (file storage, duplicate window 2 min, a Nats-Msg-Id on every message),
// as fast as the server acks them, at most WINDOW in flight.
//
//   anchor URL [N [WINDOW [REPLICAS]]]
//
// Prints one line: messages, seconds, msgs/s. Build and run with
// scripts/bench-forward-anchor.sh.
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail(const char *what, natsStatus s)
{
    fprintf(stderr, "anchor: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
    exit(1);
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: anchor URL [N [WINDOW [REPLICAS]]]\n");
        return 2;
    }
    const char *url = argv[1];
    long count = argc > 2 ? atol(argv[2]) : 200000;
    long window = argc > 3 ? atol(argv[3]) : 1024;
    long replicas = argc > 4 ? atol(argv[4]) : 1;

    natsConnection *nc = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s != NATS_OK) fail("connect", s);

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = window;
    jsCtx *js = NULL;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) fail("JetStream context", s);

    // A fresh stream per run: the same shape the forwarder creates.
    js_DeleteStream(js, "ANCHOR", NULL, NULL);
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    const char *subjects[1] = { "anchor.>" };
    config.Name = "ANCHOR";
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = replicas;
    config.Duplicates = (int64_t)120 * 1000000000;
    jsStreamInfo *info = NULL;
    if ((s = js_AddStream(&info, js, &config, NULL, NULL)) != NATS_OK) fail("add stream", s);
    jsStreamInfo_Destroy(info);

    char body[256];
    memset(body, 'x', sizeof(body));
    char id[64];
    double start = now_seconds();
    for (long i = 1; i <= count; i++) {
        natsMsg *msg = NULL;
        snprintf(id, sizeof(id), "00000000000000a1-%ld", i);
        s = natsMsg_Create(&msg, "anchor.host.info", NULL, body, sizeof(body));
        if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", id);
        if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Secureops-Host", "host");
        // At MaxPending, this waits (StallWait) for acks to free the window.
        while (s == NATS_OK && (s = js_PublishMsgAsync(js, &msg, NULL)) == NATS_TIMEOUT) s = NATS_OK;
        natsMsg_Destroy(msg);
        if (s != NATS_OK) fail("publish", s);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK) fail("wait for acks", s);
    double elapsed = now_seconds() - start;

    printf("anchor: %ld messages of 256 bytes, window %ld, replicas %ld: %.3f s, %.0f msgs/s\n",
           count, window, replicas, elapsed, (double)count / elapsed);

    js_DeleteStream(js, "ANCHOR", NULL, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return 0;
}
