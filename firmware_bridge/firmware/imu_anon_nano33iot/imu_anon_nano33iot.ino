/*
 * imu-anon reference firmware: Arduino Nano 33 IoT (SAMD21, Cortex-M0+, on-board LSM6DS3).
 *
 * A 50 Hz timer interrupt (TC3) timestamps each sample; the loop reads the LSM6DS3's twelve
 * output bytes in one I2C burst and hands them, untouched, to the tested C core
 * (imu_frame.c), which frames them and schedules HELLO and HEARTBEAT. Everything that can be
 * wrong on the wire is decided in imu_frame.c; this file only talks to the hardware.
 * Build and flash: see README.md next to this file.
 */
#include <Wire.h>

#include "imu_frame.h"

#define LINK Serial         /* USB CDC: /dev/ttyACM0 on the gateway. Serial1 = pins 0/1 UART. */
#define LINK_BAUD 115200
#define SAMPLE_HZ 50u
#define SAMPLES_PER_FRAME 10u /* 0.2 s a frame: 146 bytes, 12.7 ms of a 115200 baud UART */
#define HELLO_PERIOD_MS 2000u
#define HEARTBEAT_PERIOD_MS 1000u

/* LSM6DS3 registers (ST DocID026899). */
#define LSM6DS3_ADDR 0x6A
#define REG_WHO_AM_I 0x0F
#define REG_CTRL1_XL 0x10
#define REG_CTRL2_G 0x11
#define REG_CTRL3_C 0x12
#define REG_OUTX_L_G 0x22 /* gx gy gz ax ay az, 16-bit little-endian each */
#define CTRL1_XL_104HZ_4G 0x48   /* ODR 104 Hz (fresh data at every 50 Hz read), ±4 g */
#define CTRL2_G_104HZ_1000DPS 0x48 /* ODR 104 Hz, ±1000 dps */
#define CTRL3_C_BDU_IF_INC 0x44  /* block data update, register auto-increment */
/* The sensitivities of those ranges, as the HELLO declares them (exact fractions). */
#define IMU_ACC_NUM 122u      /* 0.122 mg/LSB at ±4 g */
#define IMU_ACC_DEN 1000000u
#define IMU_GYRO_NUM 35000u   /* 35 mdps/LSB at ±1000 dps */
#define IMU_GYRO_DEN 1000000u

#define STATUS_SENSOR_FAILED 0x01u
#define STATUS_SAMPLE_OVERRUN 0x02u

static imuf_config_t config;
static imuf_stream_t stream;
static uint8_t frame[IMUF_MAX_WIRE];
static volatile uint32_t tick_us;
static volatile uint16_t ticks;

static bool write_reg(uint8_t reg, uint8_t value)
{
    Wire.beginTransmission(LSM6DS3_ADDR);
    Wire.write(reg);
    Wire.write(value);
    return Wire.endTransmission() == 0;
}

static bool read_regs(uint8_t reg, uint8_t *out, uint8_t n)
{
    Wire.beginTransmission(LSM6DS3_ADDR);
    Wire.write(reg);
    if (Wire.endTransmission(false) != 0 || Wire.requestFrom(LSM6DS3_ADDR, n) != n) {
        return false;
    }
    for (uint8_t i = 0; i < n; i++) {
        out[i] = (uint8_t)Wire.read();
    }
    return true;
}

/* The SAMD21's 128-bit serial number (datasheet 9.3.3), folded to the 64-bit device id. */
static uint64_t device_serial(void)
{
    const uint32_t w0 = *(const volatile uint32_t *)0x0080A00CUL;
    const uint32_t w1 = *(const volatile uint32_t *)0x0080A040UL;
    const uint32_t w2 = *(const volatile uint32_t *)0x0080A044UL;
    const uint32_t w3 = *(const volatile uint32_t *)0x0080A048UL;
    return ((uint64_t)(w0 ^ w1) << 32) | (uint64_t)(w2 ^ w3);
}

/* A new boot_id at every boot. The SAMD21 has no RNG: mix the low bits of a floating ADC
 * input with the time USB enumeration took. A repeat (1 in 2^32) only delays the gateway's
 * reboot detection until its sequence check sees the counter restart. */
static uint32_t fresh_boot_id(void)
{
    uint32_t x = micros() * 2654435761u;
    for (uint8_t i = 0; i < 32; i++) {
        x = (x << 1 | (x >> 31)) ^ (uint32_t)(analogRead(A7) & 1u);
    }
    return x ? x : 1u;
}

/* TC3 as a 50 Hz match-frequency timer from the 48 MHz GCLK0: 48 MHz / 64 / 15000 = 50 Hz. */
static void start_sample_timer(void)
{
    GCLK->CLKCTRL.reg = GCLK_CLKCTRL_CLKEN | GCLK_CLKCTRL_GEN_GCLK0 | GCLK_CLKCTRL_ID_TCC2_TC3;
    while (GCLK->STATUS.bit.SYNCBUSY) {
    }
    TC3->COUNT16.CTRLA.reg &= ~TC_CTRLA_ENABLE;
    while (TC3->COUNT16.STATUS.bit.SYNCBUSY) {
    }
    TC3->COUNT16.CTRLA.reg = TC_CTRLA_MODE_COUNT16 | TC_CTRLA_WAVEGEN_MFRQ | TC_CTRLA_PRESCALER_DIV64;
    TC3->COUNT16.CC[0].reg = (uint16_t)(48000000u / 64u / SAMPLE_HZ - 1u);
    while (TC3->COUNT16.STATUS.bit.SYNCBUSY) {
    }
    TC3->COUNT16.INTENSET.reg = TC_INTENSET_MC0;
    NVIC_EnableIRQ(TC3_IRQn);
    TC3->COUNT16.CTRLA.reg |= TC_CTRLA_ENABLE;
    while (TC3->COUNT16.STATUS.bit.SYNCBUSY) {
    }
}

void TC3_Handler(void)
{
    TC3->COUNT16.INTFLAG.reg = TC_INTFLAG_MC0;
    tick_us = micros();
    ticks++;
}

void setup(void)
{
    LINK.begin(LINK_BAUD);
    Wire.begin();
    Wire.setClock(400000);
    uint8_t who = 0;
    /* 0x69 LSM6DS3, 0x6A LSM6DS3TR-C (later boards), 0x6C LSM6DSOX: same registers and scales. */
    bool ok = read_regs(REG_WHO_AM_I, &who, 1) && (who == 0x69 || who == 0x6A || who == 0x6C) &&
              write_reg(REG_CTRL3_C, CTRL3_C_BDU_IF_INC) &&
              write_reg(REG_CTRL1_XL, CTRL1_XL_104HZ_4G) && write_reg(REG_CTRL2_G, CTRL2_G_104HZ_1000DPS);

    IMUF_PRESET_LSM6DS3(&config); /* byte order and channel order of the burst read */
    config.device_id = device_serial();
    config.boot_id = fresh_boot_id();
    config.fw_major = 0;
    config.fw_minor = 1;
    config.fw_patch = 0;
    config.rate_mhz = SAMPLE_HZ * 1000u;
    config.acc_num = IMU_ACC_NUM;
    config.acc_den = IMU_ACC_DEN;
    config.gyro_num = IMU_GYRO_NUM;
    config.gyro_den = IMU_GYRO_DEN;
    config.hello_period_ms = HELLO_PERIOD_MS;
    imuf_stream_init(&stream, &config, IMUF_FORMAT_INT16, SAMPLES_PER_FRAME, HEARTBEAT_PERIOD_MS, micros());
    if (!ok) {
        stream.status |= STATUS_SENSOR_FAILED; /* reported in every HEARTBEAT until it works */
    }
    start_sample_timer();
}

void loop(void)
{
    uint8_t raw[12];
    uint32_t t_us;
    uint16_t n_ticks;
    size_t n;

    noInterrupts();
    t_us = tick_us;
    n_ticks = ticks;
    ticks = 0;
    interrupts();
    if (n_ticks == 0) {
        return;
    }
    if (n_ticks > 1) {
        stream.status |= STATUS_SAMPLE_OVERRUN; /* the loop fell behind the timer */
    }
    if (!read_regs(REG_OUTX_L_G, raw, sizeof raw)) {
        stream.status |= STATUS_SENSOR_FAILED;
        return;
    }
    imuf_stream_push(&stream, raw, t_us);
    while ((n = imuf_stream_next(&stream, frame)) > 0) {
        if (LINK.write(frame, n) != n) {
            imuf_stream_note_tx_drop(&stream);
        }
    }
}
