/*
 * imu_frame: the device side of the imu-anon wire protocol, version 1 (see ../PROTOCOL.md).
 *
 * C99, no malloc, no floating point unless IMUF_WITH_FLOAT is defined (float32 samples only).
 * Every frame is built in place in one caller-owned buffer of IMUF_MAX_WIRE bytes:
 *   COBS(body || crc16_le(body)) || 0x00
 * Functions return the number of bytes to transmit (delimiter included), or 0 when the
 * arguments cannot make a valid frame (nothing to send; the firmware should count it).
 */
#ifndef IMU_FRAME_H
#define IMU_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMUF_VERSION 1u

#define IMUF_TYPE_HELLO 0x01u
#define IMUF_TYPE_SAMPLES 0x02u
#define IMUF_TYPE_HEARTBEAT 0x03u

#define IMUF_FORMAT_INT16 0u   /* raw counts, byte order as the HELLO declares */
#define IMUF_FORMAT_FLOAT32 1u /* little-endian IEEE-754: acc in g, gyro in deg/s */

#define IMUF_FLAG_BIG_ENDIAN 0x01u /* HELLO flags: int16 samples are big-endian */

#define IMUF_CH_ACC_X 1u
#define IMUF_CH_ACC_Y 2u
#define IMUF_CH_ACC_Z 3u
#define IMUF_CH_GYRO_X 4u
#define IMUF_CH_GYRO_Y 5u
#define IMUF_CH_GYRO_Z 6u
#define IMUF_CH_TEMPERATURE 7u /* carried, ignored by the gateway */

#define IMUF_MAX_RAW 254u          /* body + CRC: COBS then adds exactly one byte */
#define IMUF_MAX_WIRE 256u         /* IMUF_MAX_RAW + COBS code byte + 0x00 delimiter */
#define IMUF_HEADER_SIZE 14u
#define IMUF_SAMPLES_HEADER_SIZE 22u
#define IMUF_MAX_SAMPLE_BYTES 230u /* IMUF_MAX_RAW - 2 (CRC) - IMUF_SAMPLES_HEADER_SIZE */
#define IMUF_MAX_CHANNELS 16u

#define IMUF_CHIP_CUSTOM 0u
#define IMUF_CHIP_MPU6050 1u
#define IMUF_CHIP_LSM6DS3 2u
#define IMUF_CHIP_LSM6DSOX 3u
#define IMUF_CHIP_BMI270 4u

/* What the HELLO says. Scales are exact fractions: g per LSB and deg/s per LSB. */
typedef struct {
    uint64_t device_id;
    uint32_t boot_id; /* a fresh value at every boot (the gateway treats a new one as a reboot) */
    uint8_t fw_major, fw_minor, fw_patch;
    uint8_t chip;  /* IMUF_CHIP_*, informational */
    uint8_t flags; /* IMUF_FLAG_* */
    uint32_t rate_mhz; /* sample rate in millihertz: 50 Hz = 50000 */
    uint32_t acc_num, acc_den;
    uint32_t gyro_num, gyro_den;
    uint16_t hello_period_ms; /* the device repeats its HELLO this often (0: never) */
    uint8_t n_channels;
    uint8_t channels[IMUF_MAX_CHANNELS]; /* IMUF_CH_* in the order samples carry them */
} imuf_config_t;

/* Chip presets at the chips' power-on ranges, in each chip's register (burst-read) order. */
#define IMUF_PRESET_MPU6050(cfg) do { /* ±2 g: 16384 LSB/g; ±250 dps: 131 LSB/(deg/s) */ \
        (cfg)->chip = IMUF_CHIP_MPU6050; (cfg)->flags = IMUF_FLAG_BIG_ENDIAN; \
        (cfg)->acc_num = 1u; (cfg)->acc_den = 16384u; (cfg)->gyro_num = 1u; (cfg)->gyro_den = 131u; \
        (cfg)->n_channels = 7u; (cfg)->channels[0] = IMUF_CH_ACC_X; (cfg)->channels[1] = IMUF_CH_ACC_Y; \
        (cfg)->channels[2] = IMUF_CH_ACC_Z; (cfg)->channels[3] = IMUF_CH_TEMPERATURE; \
        (cfg)->channels[4] = IMUF_CH_GYRO_X; (cfg)->channels[5] = IMUF_CH_GYRO_Y; \
        (cfg)->channels[6] = IMUF_CH_GYRO_Z; } while (0)
#define IMUF_PRESET_LSM6DS3(cfg) do { /* ±2 g: 0.061 mg/LSB; ±245 dps: 8.75 mdps/LSB */ \
        (cfg)->chip = IMUF_CHIP_LSM6DS3; (cfg)->flags = 0u; \
        (cfg)->acc_num = 61u; (cfg)->acc_den = 1000000u; (cfg)->gyro_num = 8750u; (cfg)->gyro_den = 1000000u; \
        (cfg)->n_channels = 6u; (cfg)->channels[0] = IMUF_CH_GYRO_X; (cfg)->channels[1] = IMUF_CH_GYRO_Y; \
        (cfg)->channels[2] = IMUF_CH_GYRO_Z; (cfg)->channels[3] = IMUF_CH_ACC_X; \
        (cfg)->channels[4] = IMUF_CH_ACC_Y; (cfg)->channels[5] = IMUF_CH_ACC_Z; } while (0)
#define IMUF_PRESET_BMI270(cfg) do { /* ±8 g and ±2000 dps: range / 32768 per LSB */ \
        (cfg)->chip = IMUF_CHIP_BMI270; (cfg)->flags = 0u; \
        (cfg)->acc_num = 8u; (cfg)->acc_den = 32768u; (cfg)->gyro_num = 2000u; (cfg)->gyro_den = 32768u; \
        (cfg)->n_channels = 6u; (cfg)->channels[0] = IMUF_CH_ACC_X; (cfg)->channels[1] = IMUF_CH_ACC_Y; \
        (cfg)->channels[2] = IMUF_CH_ACC_Z; (cfg)->channels[3] = IMUF_CH_GYRO_X; \
        (cfg)->channels[4] = IMUF_CH_GYRO_Y; (cfg)->channels[5] = IMUF_CH_GYRO_Z; } while (0)

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor. */
uint16_t imuf_crc16(const uint8_t *data, size_t len);

/* COBS-encode buf[1..n] in place (n <= IMUF_MAX_RAW), writing the first code byte to buf[0];
 * returns n + 1, the encoded length without the delimiter (0 when n is too large). */
size_t imuf_cobs_inplace(uint8_t *buf, size_t n);

/* Bytes of one sample: n_channels x 2 (int16) or x 4 (float32); 0 for an unknown format. */
size_t imuf_sample_bytes(const imuf_config_t *cfg, uint8_t format);

size_t imuf_encode_hello(uint8_t out[IMUF_MAX_WIRE], const imuf_config_t *cfg);
/* payload: count samples of imuf_sample_bytes() each, channels in cfg order, already in wire
 * byte order (an IMU's register dump can be passed as is). */
size_t imuf_encode_samples(uint8_t out[IMUF_MAX_WIRE], const imuf_config_t *cfg, uint16_t seq,
                           uint32_t t_us, uint8_t format, uint8_t count, const uint8_t *payload,
                           size_t payload_len);
size_t imuf_encode_heartbeat(uint8_t out[IMUF_MAX_WIRE], const imuf_config_t *cfg, uint16_t seq,
                             uint32_t t_us, uint16_t tx_dropped, uint8_t status);

/* Store a value for a payload. */
void imuf_put_i16le(uint8_t *p, int16_t v);
void imuf_put_i16be(uint8_t *p, int16_t v);
#ifdef IMUF_WITH_FLOAT
void imuf_put_f32le(uint8_t *p, float v); /* copies the bits; no float arithmetic */
#endif

/*
 * The frame schedule (see firmware_bridge/device.py, its twin): push one sample at a time,
 * then drain imuf_stream_next() until it returns 0. Order: HELLO (at start and every
 * hello_period_ms), SAMPLES (when samples_per_frame are buffered, or after a flush),
 * HEARTBEAT (every heartbeat_period_ms). The caller owns the struct; ~260 bytes of RAM.
 */
typedef struct {
    const imuf_config_t *cfg;
    uint8_t format;
    uint8_t sample_bytes;
    uint8_t samples_per_frame;
    uint8_t count;
    uint8_t hello_due, heartbeat_due, flush;
    uint8_t status;      /* OR in bits; sent and cleared with the next HEARTBEAT */
    uint16_t seq;
    uint16_t tx_dropped; /* frames the UART could not take; imuf_stream_note_tx_drop() */
    uint16_t heartbeat_period_ms;
    uint32_t now_us, t_first_us, last_hello_us, last_heartbeat_us;
    uint8_t payload[IMUF_MAX_SAMPLE_BYTES];
} imuf_stream_t;

/* Returns 0, or -1 when the format, frame size or periods cannot work with cfg. */
int imuf_stream_init(imuf_stream_t *s, const imuf_config_t *cfg, uint8_t format,
                     uint8_t samples_per_frame, uint16_t heartbeat_period_ms, uint32_t now_us);
/* Copies one sample (imuf_sample_bytes() bytes, wire order). Returns -1 and keeps nothing
 * when the previous frame was not drained. */
int imuf_stream_push(imuf_stream_t *s, const uint8_t *sample, uint32_t t_us);
void imuf_stream_flush(imuf_stream_t *s);
void imuf_stream_note_tx_drop(imuf_stream_t *s);
size_t imuf_stream_next(imuf_stream_t *s, uint8_t out[IMUF_MAX_WIRE]);

#ifdef __cplusplus
}
#endif

#endif /* IMU_FRAME_H */
