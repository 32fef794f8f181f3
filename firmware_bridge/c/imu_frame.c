/* imu_frame.c: see imu_frame.h and ../PROTOCOL.md. C99, no malloc, no floating point. */
#include "imu_frame.h"

#include <string.h>

uint16_t imuf_crc16(const uint8_t *data, size_t len)
{
    /* Bitwise rather than a 512-byte table: a 150-byte frame costs ~10k cycles, well under
     * 1 % of a 48 MHz Cortex-M0 at 5 frames/s, and the flash goes to the application. */
    uint16_t crc = 0xFFFFu;
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t bit;
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8u; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

void imuf_put_i16le(uint8_t *p, int16_t v)
{
    put_u16(p, (uint16_t)v);
}

void imuf_put_i16be(uint8_t *p, int16_t v)
{
    p[0] = (uint8_t)((uint16_t)v >> 8);
    p[1] = (uint8_t)((uint16_t)v & 0xFFu);
}

#ifdef IMUF_WITH_FLOAT
void imuf_put_f32le(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u32(p, bits);
}
#endif

size_t imuf_sample_bytes(const imuf_config_t *cfg, uint8_t format)
{
    if (format == IMUF_FORMAT_INT16) {
        return (size_t)cfg->n_channels * 2u;
    }
    if (format == IMUF_FORMAT_FLOAT32) {
        return (size_t)cfg->n_channels * 4u;
    }
    return 0;
}

/* The body starts at out[1]; out[0] is reserved for the first COBS code byte. */
static size_t put_header(uint8_t *out, uint8_t type, const imuf_config_t *cfg)
{
    uint8_t *b = out + 1;
    b[0] = (uint8_t)IMUF_VERSION;
    b[1] = type;
    put_u32(b + 2, (uint32_t)(cfg->device_id & 0xFFFFFFFFu));
    put_u32(b + 6, (uint32_t)(cfg->device_id >> 32));
    put_u32(b + 10, cfg->boot_id);
    return IMUF_HEADER_SIZE;
}

/* With at most 254 raw bytes no block can hold more than 254 data bytes, so no code byte
 * has to be inserted: every zero becomes the code byte of the block after it, in place. */
size_t imuf_cobs_inplace(uint8_t *buf, size_t n)
{
    size_t code_pos = 0;
    size_t i;
    if (n > IMUF_MAX_RAW) {
        return 0;
    }
    for (i = 1; i <= n; i++) {
        if (buf[i] == 0u) {
            buf[code_pos] = (uint8_t)(i - code_pos);
            code_pos = i;
        }
    }
    buf[code_pos] = (uint8_t)(n + 1u - code_pos);
    return n + 1u;
}

/* Append the CRC to the body at out[1..], COBS-encode in place and delimit. */
static size_t finish(uint8_t *out, size_t body_len)
{
    size_t n = body_len + 2u;
    if (n > IMUF_MAX_RAW) {
        return 0;
    }
    put_u16(out + 1 + body_len, imuf_crc16(out + 1, body_len));
    imuf_cobs_inplace(out, n);
    out[n + 1u] = 0u;
    return n + 2u;
}

static int config_ok(const imuf_config_t *cfg)
{
    return cfg->n_channels != 0u && cfg->n_channels <= IMUF_MAX_CHANNELS && cfg->rate_mhz != 0u &&
           cfg->acc_num != 0u && cfg->acc_den != 0u && cfg->gyro_num != 0u && cfg->gyro_den != 0u;
}

size_t imuf_encode_hello(uint8_t out[IMUF_MAX_WIRE], const imuf_config_t *cfg)
{
    size_t len;
    uint8_t *b;
    if (!config_ok(cfg)) {
        return 0;
    }
    len = put_header(out, IMUF_TYPE_HELLO, cfg);
    b = out + 1 + len;
    b[0] = cfg->fw_major;
    b[1] = cfg->fw_minor;
    b[2] = cfg->fw_patch;
    b[3] = cfg->chip;
    b[4] = cfg->flags;
    put_u32(b + 5, cfg->rate_mhz);
    put_u32(b + 9, cfg->acc_num);
    put_u32(b + 13, cfg->acc_den);
    put_u32(b + 17, cfg->gyro_num);
    put_u32(b + 21, cfg->gyro_den);
    put_u16(b + 25, cfg->hello_period_ms);
    b[27] = cfg->n_channels;
    memcpy(b + 28, cfg->channels, cfg->n_channels);
    return finish(out, len + 28u + cfg->n_channels);
}

size_t imuf_encode_samples(uint8_t out[IMUF_MAX_WIRE], const imuf_config_t *cfg, uint16_t seq,
                           uint32_t t_us, uint8_t format, uint8_t count, const uint8_t *payload,
                           size_t payload_len)
{
    size_t len;
    uint8_t *b;
    size_t each = imuf_sample_bytes(cfg, format);
    if (each == 0u || count == 0u || payload_len != (size_t)count * each ||
        payload_len > IMUF_MAX_SAMPLE_BYTES) {
        return 0;
    }
    len = put_header(out, IMUF_TYPE_SAMPLES, cfg);
    b = out + 1 + len;
    put_u16(b, seq);
    put_u32(b + 2, t_us);
    b[6] = format;
    b[7] = count;
    memcpy(b + 8, payload, payload_len);
    return finish(out, len + 8u + payload_len);
}

size_t imuf_encode_heartbeat(uint8_t out[IMUF_MAX_WIRE], const imuf_config_t *cfg, uint16_t seq,
                             uint32_t t_us, uint16_t tx_dropped, uint8_t status)
{
    size_t len = put_header(out, IMUF_TYPE_HEARTBEAT, cfg);
    uint8_t *b = out + 1 + len;
    put_u16(b, seq);
    put_u32(b + 2, t_us);
    put_u16(b + 6, tx_dropped);
    b[8] = status;
    return finish(out, len + 9u);
}

int imuf_stream_init(imuf_stream_t *s, const imuf_config_t *cfg, uint8_t format,
                     uint8_t samples_per_frame, uint16_t heartbeat_period_ms, uint32_t now_us)
{
    size_t each = imuf_sample_bytes(cfg, format);
    if (!config_ok(cfg) || each == 0u || samples_per_frame == 0u ||
        (size_t)samples_per_frame * each > IMUF_MAX_SAMPLE_BYTES) {
        return -1;
    }
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->format = format;
    s->sample_bytes = (uint8_t)each;
    s->samples_per_frame = samples_per_frame;
    s->heartbeat_period_ms = heartbeat_period_ms;
    s->now_us = now_us;
    s->last_hello_us = now_us;
    s->last_heartbeat_us = now_us;
    s->hello_due = 1u;
    return 0;
}

int imuf_stream_push(imuf_stream_t *s, const uint8_t *sample, uint32_t t_us)
{
    if (s->count >= s->samples_per_frame) {
        return -1;
    }
    s->now_us = t_us;
    if (s->count == 0u) {
        s->t_first_us = t_us;
    }
    memcpy(s->payload + (size_t)s->count * s->sample_bytes, sample, s->sample_bytes);
    s->count++;
    /* Unsigned subtraction keeps the schedule right across the u32 clock wrap (71.6 min). */
    if (s->cfg->hello_period_ms != 0u &&
        (uint32_t)(t_us - s->last_hello_us) >= (uint32_t)s->cfg->hello_period_ms * 1000u) {
        s->hello_due = 1u;
    }
    if (s->heartbeat_period_ms != 0u &&
        (uint32_t)(t_us - s->last_heartbeat_us) >= (uint32_t)s->heartbeat_period_ms * 1000u) {
        s->heartbeat_due = 1u;
    }
    return 0;
}

void imuf_stream_flush(imuf_stream_t *s)
{
    s->flush = (uint8_t)(s->count > 0u);
}

void imuf_stream_note_tx_drop(imuf_stream_t *s)
{
    if (s->tx_dropped < 0xFFFFu) {
        s->tx_dropped++;
    }
}

size_t imuf_stream_next(imuf_stream_t *s, uint8_t out[IMUF_MAX_WIRE])
{
    size_t n;
    if (s->hello_due) {
        s->hello_due = 0u;
        s->last_hello_us = s->now_us;
        return imuf_encode_hello(out, s->cfg);
    }
    if (s->count != 0u && (s->count == s->samples_per_frame || s->flush)) {
        n = imuf_encode_samples(out, s->cfg, s->seq, s->t_first_us, s->format, s->count, s->payload,
                                (size_t)s->count * s->sample_bytes);
        s->seq++;
        s->count = 0u;
        s->flush = 0u;
        return n;
    }
    if (s->heartbeat_due) {
        s->heartbeat_due = 0u;
        s->last_heartbeat_us = s->now_us;
        n = imuf_encode_heartbeat(out, s->cfg, s->seq, s->now_us, s->tx_dropped, s->status);
        s->status = 0u;
        return n;
    }
    return 0;
}
