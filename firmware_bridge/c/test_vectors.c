/* Checks imu_frame.c against the shared vectors (test_vectors.h, generated from
 * ../vectors/protocol_v1.json). Build and run:
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic -DIMUF_WITH_FLOAT imu_frame.c test_vectors.c -o t && ./t
 * Prints one line per failure and a summary; exits 0 only when every check passed. */
#include <stdio.h>
#include <string.h>

#include "imu_frame.h"
#include "test_vectors.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static unsigned checks = 0;
static unsigned failures = 0;

static size_t from_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2u;
    size_t i;
    if (n > cap) {
        return (size_t)-1;
    }
    for (i = 0; i < n; i++) {
        unsigned v = 0;
        int k;
        for (k = 0; k < 2; k++) {
            char c = hex[2u * i + (size_t)k];
            v <<= 4;
            if (c >= '0' && c <= '9') {
                v |= (unsigned)(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                v |= (unsigned)(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
                v |= (unsigned)(c - 'A' + 10);
            }
        }
        out[i] = (uint8_t)v;
    }
    return n;
}

static void expect_bytes(const char *what, const uint8_t *got, size_t got_len, const char *want_hex)
{
    uint8_t want[1024];
    size_t want_len = from_hex(want_hex, want, sizeof want);
    checks++;
    if (got_len != want_len || memcmp(got, want, want_len) != 0) {
        size_t i;
        failures++;
        printf("FAIL %s: got %u bytes ", what, (unsigned)got_len);
        for (i = 0; i < got_len; i++) {
            printf("%02x", got[i]);
        }
        printf(", want %s\n", want_hex);
    }
}

static void expect_true(const char *what, int ok)
{
    checks++;
    if (!ok) {
        failures++;
        printf("FAIL %s\n", what);
    }
}

static void test_crc(void)
{
    size_t i;
    for (i = 0; i < COUNT(TV_CRC); i++) {
        uint8_t data[512];
        size_t n = from_hex(TV_CRC[i].data, data, sizeof data);
        uint16_t got = imuf_crc16(data, n);
        checks++;
        if (got != TV_CRC[i].crc) {
            failures++;
            printf("FAIL crc16 case %u: got %04x want %04x\n", (unsigned)i, got, TV_CRC[i].crc);
        }
    }
}

static void test_cobs(void)
{
    size_t i;
    for (i = 0; i < COUNT(TV_COBS); i++) {
        uint8_t buf[IMUF_MAX_WIRE + 8];
        size_t n = strlen(TV_COBS[i].raw) / 2u;
        if (n > IMUF_MAX_RAW) {
            continue; /* longer than any frame: only the gateway's general decoder needs these */
        }
        from_hex(TV_COBS[i].raw, buf + 1, sizeof buf - 1u);
        expect_bytes("cobs", buf, imuf_cobs_inplace(buf, n), TV_COBS[i].encoded);
    }
}

static size_t build_frame(const tv_frame_t *f, uint8_t *out)
{
    uint8_t payload[IMUF_MAX_SAMPLE_BYTES];
    size_t i;
    size_t n_values;
    if (f->message == TV_HELLO) {
        return imuf_encode_hello(out, f->cfg);
    }
    if (f->message == TV_HEARTBEAT) {
        return imuf_encode_heartbeat(out, f->cfg, f->seq, f->t_us, f->tx_dropped, f->status);
    }
    n_values = (size_t)f->count * f->cfg->n_channels;
    for (i = 0; i < n_values; i++) {
        if (f->format == IMUF_FORMAT_INT16 && (f->cfg->flags & IMUF_FLAG_BIG_ENDIAN)) {
            imuf_put_i16be(payload + 2u * i, (int16_t)f->ivalues[i]);
        } else if (f->format == IMUF_FORMAT_INT16) {
            imuf_put_i16le(payload + 2u * i, (int16_t)f->ivalues[i]);
        } else {
            imuf_put_f32le(payload + 4u * i, f->fvalues[i]);
        }
    }
    return imuf_encode_samples(out, f->cfg, f->seq, f->t_us, f->format, f->count, payload,
                               n_values * (f->format == IMUF_FORMAT_INT16 ? 2u : 4u));
}

static void test_frames(void)
{
    size_t i;
    for (i = 0; i < COUNT(TV_FRAMES); i++) {
        uint8_t out[IMUF_MAX_WIRE];
        memset(out, 0xAA, sizeof out);
        expect_bytes(TV_FRAMES[i].name, out, build_frame(&TV_FRAMES[i], out), TV_FRAMES[i].wire);
    }
}

static void test_streams(void)
{
    size_t i, p, k;
    for (i = 0; i < COUNT(TV_STREAMS); i++) {
        const tv_stream_t *s = &TV_STREAMS[i];
        imuf_stream_t st;
        uint8_t out[IMUF_MAX_WIRE];
        uint8_t sample[IMUF_MAX_SAMPLE_BYTES];
        expect_true("stream init", imuf_stream_init(&st, s->cfg, s->format, s->samples_per_frame,
                                                    s->heartbeat_period_ms, s->now_us) == 0);
        st.seq = s->seq;
        for (p = 0; p < s->n_pushes; p++) {
            size_t n = from_hex(s->pushes[p].sample, sample, sizeof sample);
            expect_true("sample size", n == st.sample_bytes);
            expect_true("push", imuf_stream_push(&st, sample, s->pushes[p].t_us) == 0);
            for (k = 0; k < s->pushes[p].n_frames; k++) {
                expect_bytes(s->name, out, imuf_stream_next(&st, out), s->pushes[p].frames[k]);
            }
            expect_true("nothing more due after a push", imuf_stream_next(&st, out) == 0u);
        }
        imuf_stream_flush(&st);
        for (k = 0; k < s->n_flush; k++) {
            expect_bytes("flush", out, imuf_stream_next(&st, out), s->flush_frames[k]);
        }
        expect_true("nothing more due after the flush", imuf_stream_next(&st, out) == 0u);
    }
}

static void test_refusals(void)
{
    uint8_t out[IMUF_MAX_WIRE];
    uint8_t payload[240];
    imuf_config_t cfg = TV_CONFIG_bmi270_50hz;
    imuf_stream_t st;
    memset(payload, 1, sizeof payload);
    expect_true("20 int16 samples of 6 channels do not fit a frame",
                imuf_encode_samples(out, &cfg, 0, 0, IMUF_FORMAT_INT16, 20, payload, 240) == 0u);
    expect_true("a payload that is not count whole samples is refused",
                imuf_encode_samples(out, &cfg, 0, 0, IMUF_FORMAT_INT16, 2, payload, 25) == 0u);
    expect_true("an unknown format is refused",
                imuf_encode_samples(out, &cfg, 0, 0, 9u, 1, payload, 12) == 0u);
    expect_true("a stream refuses frames larger than the protocol allows",
                imuf_stream_init(&st, &cfg, IMUF_FORMAT_FLOAT32, 10, 1000, 0) == -1);
    expect_true("a stream with 2 samples per frame starts",
                imuf_stream_init(&st, &cfg, IMUF_FORMAT_INT16, 2, 1000, 0) == 0);
    expect_true("push 1", imuf_stream_push(&st, payload, 0) == 0);
    expect_true("push 2", imuf_stream_push(&st, payload, 20000) == 0);
    expect_true("an undrained stream refuses a third sample", imuf_stream_push(&st, payload, 40000) == -1);
    cfg.gyro_den = 0u;
    expect_true("a HELLO with a zero denominator is refused", imuf_encode_hello(out, &cfg) == 0u);
}

int main(void)
{
    test_crc();
    test_cobs();
    test_frames();
    test_streams();
    test_refusals();
    printf("%s: %u checks, %u failures\n", failures ? "FAILED" : "ok", checks, failures);
    return failures ? 1 : 0;
}
