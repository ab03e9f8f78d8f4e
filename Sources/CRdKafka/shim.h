// The only C the project has: librdkafka's public headers plus small wrappers for what Swift cannot import
// (variadic functions and function-like macros).
#ifndef DISTILLD_CRDKAFKA_SHIM_H
#define DISTILLD_CRDKAFKA_SHIM_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

// rd_kafka_producev is variadic. Key and value are copied (F_COPY) so the caller's buffers may be freed at once.
// On success librdkafka owns `headers` (may be NULL); on failure the caller still owns them.
static inline rd_kafka_resp_err_t distilld_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                   const void *key, size_t key_len, const void *value,
                                                   size_t value_len, rd_kafka_headers_t *headers,
                                                   int64_t timestamp_ms, void *opaque) {
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(headers),
                             RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

// RD_KAFKA_OFFSET_TAIL is a function-like macro.
static inline int64_t distilld_offset_tail(int64_t count) { return RD_KAFKA_OFFSET_TAIL(count); }

#endif
