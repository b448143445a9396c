/* ops.c — see ops.h. Each function follows ggml's CPU code (build b4748) operation by operation:
 * the zoo2 references were computed with it. */
#include <math.h>
#include <pthread.h>

#include "engine/ops.h"
#include "kernels/fp16.h"

/* ---- GELU ---------------------------------------------------------------------------------- */

#define GELU_COEF_A    0.044715f
#define SQRT_2_OVER_PI 0.79788456080286535587989211986876f

static uint16_t gelu_table[1 << 16]; /* F16 bits in -> F16 bits of gelu out */
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_init(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++) {
        const float x = elm_fp16_to_f32((uint16_t)i);
        const float y =
            0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * (1.0f + GELU_COEF_A * x * x)));
        gelu_table[i] = elm_f32_to_fp16(y);
    }
}

void elm_gelu_mul(float *g, const float *u, int64_t n)
{
    pthread_once(&gelu_once, gelu_init);
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        float y;
        if (x <= -10.0f)
            y = 0.0f;
        else if (x >= 10.0f)
            y = x;
        else
            y = elm_fp16_to_f32(gelu_table[elm_f32_to_fp16(x)]);
        g[i] = u ? y * u[i] : y;
    }
}

/* ---- LayerNorm ----------------------------------------------------------------------------- */

void elm_layernorm(float *y, const float *x, const float *w, const float *b, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)x[i];
    const float mean = (float)(sum / (double)n);
    double sum2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] - mean;
        y[i] = v;
        sum2 += (double)(v * v);
    }
    const float var = (float)(sum2 / (double)n);
    const float scale = 1.0f / sqrtf(var + eps);
    /* three separate roundings, as ggml's norm, mul and add are separate operations */
    for (int64_t i = 0; i < n; i++) {
        const float v = y[i] * scale;
        const float vw = v * w[i];
        y[i] = vw + b[i];
    }
}

/* ---- soft-capping -------------------------------------------------------------------------- */

void elm_softcap(float *x, int64_t n, float c)
{
    const float inv = 1.0f / c;
    for (int64_t i = 0; i < n; i++) {
        const float s = x[i] * inv;
        x[i] = tanhf(s) * c;
    }
}
