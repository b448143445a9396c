/* test_ops.c — the operations around the matmuls in the scalar reference kernels (kernels/ref),
 * and the dispatch table that picks a kernel variant.
 *
 * What is checked, and against what:
 *  (f) the operations around the matmuls (rmsnorm, rope, softmax, silu_mul, kv_dot, kv_mix)
 *      against double-precision math within bounds from their float arithmetic (counted
 *      roundings, 2^-24 each; exp within ggml's documented error), and every float the reference
 *      kernels produce pinned by a digest (the order of their additions reproduces the zoo
 *      references bit for bit; the digest catches a change of it without the zoo files);
 *      every SIMD variant offered must give the same bits;
 *  plus the dispatch table (no holes, ELM_KERNEL override with a warning).
 * The type table, round trips, real files, vec_dot and matmul determinism ((a)-(e)) are in
 * test_quant.c.
 */
#include <link.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "tests/common/elm_test.h"
#include "tests/common/quant_data.h"
#include "tests/common/variants.h"

/* ---- (f) the operations around the matmuls ----------------------------------------------- */

/* Uniform floats in [-1, 1) from the integer generator only (no libm), so that the digest
 * below sees the same inputs on every machine. */
static void fill_uniform(float *x, int64_t n, uint64_t seed)
{
    elm_test_rng_seed(seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((int32_t)(elm_test_rng_next() >> 40) - (1 << 23)) / (float)(1 << 23);
}

static uint16_t *to_half(const float *x, int64_t n)
{
    uint16_t *h = elm_test_xmalloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++)
        h[i] = elm_f32_to_fp16(x[i]);
    return h;
}

/* Each op against the same math in double. The bounds count the float roundings of each
 * reference kernel (kernels/ref/ops.c) on the path of a value, u = 2^-24 each: n relative
 * roundings compose to at most gamma(n) = n u / (1 - n u) (Higham, Accuracy and Stability of
 * Numerical Algorithms, 2nd ed., 3.1), and a sum whose terms each pass through at most n
 * roundings errs by at most gamma(n) times the sum of the terms' magnitudes. exp_lane is
 * ggml's vectorized expf (ggml_v_expf), whose source (llama.cpp ggml/src/ggml-cpu/vec.h, from
 * Arm's optimized routines) states its maximum error: "1.45358 plus 0.5 ulps", under
 * 2 ulp = 2^-22 relative; glibc's expf (silu's tail) is within 1 ulp. */
#define ULP     0x1p-24
#define EXP_ERR 0x1p-22

static double gamma_n(double n)
{
    return n * ULP / (1.0 - n * ULP);
}

/* kv_mix over all n positions at once into zeroed lanes, then kv_fold (kernels.h); stride in
 * elements of the cache type (esz bytes each) */
static void mix_all(const struct elm_kernels *k, enum elm_type t, int64_t n, int64_t hd, float *out,
                    const float *w, const void *v, int64_t stride, size_t esz)
{
    float *lanes = calloc((size_t)(16 * hd), sizeof *lanes);
    assert_non_null(lanes);
    k->kv_mix[t](n, hd, lanes, w, v, stride * (int64_t)esz);
    k->kv_fold(hd, lanes, out);
    free(lanes);
}

/* Sizes of the op checks: rows of MATH_N, heads of MATH_HD, MATH_NPOS cached positions
 * MATH_STRIDE floats apart. */
enum { MATH_N = 768, MATH_HD = 64, MATH_NPOS = 100, MATH_STRIDE = 128 };

static void check_rmsnorm_rope(const struct elm_kernels *k, float *x, float *g, float *y)
{
    double worst;

    /* rmsnorm: the sum of squares (u, halved by the square root), the mean's rounding and
     * + eps (u each, halved), sqrtf, the division and the two products: 5.5 u, within gamma(6);
     * the double sum's roundings and eps's float rounding are below 2^-40 */
    elm_test_fill_normal(x, MATH_N, 11);
    elm_test_fill_normal(g, MATH_N, 12);
    k->rmsnorm(y, x, g, 256, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 256; i++)
        ss += (double)x[i] * x[i];
    worst = 0;
    for (int i = 0; i < 256; i++) {
        double want = x[i] / sqrt(ss / 256 + 1e-5) * g[i];
        worst = fmax(worst, fabs(y[i] - want) / fabs(want));
    }
    print_message("rmsnorm   worst rel. error %.2e (bound %.2e)\n", worst, gamma_n(6));
    assert_true(worst <= gamma_n(6));

    /* rope: the angles are built by repeated multiplication in float, as llama.cpp does, so
     * angle i carries i roundings (u each) and i factors of powf's own error on the ratio
     * (measured here against the exact ratio, libm's figure, not elm's), and cosf/sinf add at
     * most an ulp of a value <= 1 (2^-23); the rotation rounds a product and a fused
     * multiply-add: gamma(2) of |x0 c| + |x1 s| */
    const double ratio = pow(10000.0, -2.0 / MATH_HD);
    const double pow_err = fabs(powf(10000.0f, -2.0f / MATH_HD) - ratio) / ratio;
    float cs[MATH_HD];
    const int32_t pos = 1000;
    for (int neox = 0; neox < 2; neox++) {
        k->rope_table(cs, MATH_HD, pos, 10000.0f, 1.0f);
        worst = 0;
        for (int i = 0; i < MATH_HD / 2; i++) {
            double th = pos * pow(10000.0, -2.0 * i / MATH_HD);
            double bound = th * (gamma_n(i) + 1.01 * i * pow_err) + 0x1p-23;
            double e = fmax(fabs(cs[2 * i] - cos(th)), fabs(cs[2 * i + 1] - sin(th)));
            worst = fmax(worst, e);
            assert_true(e <= bound);
        }
        elm_test_fill_normal(x, MATH_HD, 13);
        memcpy(y, x, MATH_HD * sizeof *y);
        k->rope(y, MATH_HD, cs, neox);
        double err = 0;
        for (int i = 0; i < MATH_HD / 2; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + MATH_HD / 2 : 2 * i + 1;
            double c = cs[2 * i], sn = cs[2 * i + 1];
            double mag = fabs(x[a] * c) + fabs(x[b] * sn), mag2 = fabs(x[a] * sn) + fabs(x[b] * c);
            double ea = fabs(y[a] - (x[a] * c - x[b] * sn)) / mag;
            double eb = fabs(y[b] - (x[a] * sn + x[b] * c)) / mag2;
            /* two steps: GCC 12's aarch64 vectorizer crashes on the nested fmax reduction
             * (internal compiler error in vect_transform_reduction) */
            err = fmax(err, ea);
            err = fmax(err, eb);
        }
        print_message("rope%s   table %.1e, rotation %.2e (bound %.2e)\n", neox ? "neox" : "    ",
                      worst, err, gamma_n(2));
        assert_true(err <= gamma_n(2));
    }
}

static void check_softmax_silu(const struct elm_kernels *k, float *x, float *g, float *y)
{
    double worst;

    /* softmax: each e_i = exp(x_i - mx) errs by EXP_ERR plus u |x_i - mx| (the subtraction's
     * rounding, moved through exp); the sum of positive terms by the largest of those plus 4
     * rounds of the 16-lane fold (the block sums are added in double, below 2^-40); then
     * 1 / sum and the product: gamma(2) */
    for (int n = 1; n <= MATH_NPOS; n += 33) {
        elm_test_fill_normal(x, n, 14 + n);
        for (int i = 0; i < n; i++)
            x[i] *= 4.0f;
        memcpy(y, x, n * sizeof *y);
        k->softmax(y, n);
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++)
            mx = fmax(mx, x[i]);
        double e_max = 0;
        for (int i = 0; i < n; i++) {
            sum += exp(x[i] - mx);
            e_max = fmax(e_max, EXP_ERR + ULP * (mx - x[i]));
        }
        worst = 0;
        for (int i = 0; i < n; i++) {
            double want = exp(x[i] - mx) / sum;
            double bound = 1.01 * (EXP_ERR + ULP * (mx - x[i]) + e_max) + gamma_n(6) + 0x1p-40;
            worst = fmax(worst, fabs(y[i] - want) / want / bound);
        }
        print_message("softmax   n=%3d worst error %.2f of its bound\n", n, worst);
        assert_true(worst <= 1.0);
    }

    /* silu_mul over a row of 768 (all in blocks of 16) and one of 20 (a tail through libm's
     * expf, within the same 2 ulp): exp's error (which 1 + e can only shrink), then 1 + e, the
     * division and the product, gamma(3) */
    for (int n = MATH_N; n > 0; n = n == MATH_N ? 20 : 0) {
        elm_test_fill_normal(x, n, 15);
        elm_test_fill_normal(g, n, 16);
        for (int i = 0; i < n; i++)
            x[i] *= 6.0f;
        memcpy(y, x, n * sizeof *y);
        k->silu_mul(y, g, n);
        worst = 0;
        for (int i = 0; i < n; i++) {
            double want = x[i] / (1.0 + exp(-(double)x[i])) * g[i];
            worst = fmax(worst, fabs(y[i] - want) / fabs(want));
        }
        const double bound = 1.01 * EXP_ERR + gamma_n(3);
        print_message("silu_mul  n=%3d worst rel. error %.2e (bound %.2e)\n", n, worst, bound);
        assert_true(worst <= bound);
    }
}

static void check_kv(const struct elm_kernels *k)
{
    /* kv_dot: F32 rows of 64 (the vector loop only), 80 and 135 (tails); F16 rows. Error
     * relative to sum |k q|. F32: n / 64 fused steps per lane, 2 + 4 folding rounds, then the
     * tail's n % 64 additions (a product and an add each): gamma(n / 64 + n % 64 + 8). F16
     * (products of halves are exact): ceil(n / 16) fused steps and 4 folding rounds. */
    float *kq = elm_test_xmalloc(2 * 160 * sizeof *kq);
    for (int n = 64; n < 160; n = n == 64 ? 80 : n == 80 ? 135 : 160) {
        elm_test_fill_normal(kq, 2 * n, 17 + n);
        uint16_t *kh = to_half(kq, n), *qh = to_half(kq + n, n);
        double exact = 0, mag = 0, exact_h = 0, mag_h = 0;
        for (int i = 0; i < n; i++) {
            exact += (double)kq[i] * kq[n + i];
            mag += fabs((double)kq[i] * kq[n + i]);
            double p = (double)elm_fp16_to_f32(kh[i]) * elm_fp16_to_f32(qh[i]);
            exact_h += p;
            mag_h += fabs(p);
        }
        float s32, s16;
        k->kv_dot[ELM_TYPE_F32](n, &s32, kq, kq + n);
        k->kv_dot[ELM_TYPE_F16](n, &s16, kh, qh);
        const double b32 = gamma_n(n / 64 + n % 64 + 8), b16 = gamma_n((n + 15) / 16 + 4);
        print_message("kv_dot    n=%3d f32 %.2e (bound %.2e) f16 %.2e (bound %.2e)\n", n,
                      fabs(s32 - exact) / mag, b32, fabs(s16 - exact_h) / mag_h, b16);
        assert_true(fabs(s32 - exact) / mag <= b32);
        assert_true(fabs(s16 - exact_h) / mag_h <= b16);
        free(kh);
        free(qh);
    }
    free(kq);

    /* kv_mix over MATH_NPOS positions of a cache with rows of MATH_STRIDE floats; weights from a
     * softmax. F16: the weights are rounded to half first, as the kernel documents. Error relative
     * to sum |w v|: each lane a fused chain of ceil(MATH_NPOS / 16) steps, then 4 folding rounds
     * (the products of halves are exact, F32's are fused) */
    float *v = elm_test_xmalloc(MATH_NPOS * MATH_STRIDE * sizeof *v),
          *w = elm_test_xmalloc(MATH_NPOS * sizeof *w);
    float out32[MATH_HD], out16[MATH_HD];
    elm_test_fill_normal(v, MATH_NPOS * MATH_STRIDE, 18);
    elm_test_fill_normal(w, MATH_NPOS, 19);
    k->softmax(w, MATH_NPOS);
    uint16_t *vh = to_half(v, MATH_NPOS * MATH_STRIDE);
    mix_all(k, ELM_TYPE_F32, MATH_NPOS, MATH_HD, out32, w, v + 8, MATH_STRIDE, 4);
    mix_all(k, ELM_TYPE_F16, MATH_NPOS, MATH_HD, out16, w, vh + 8, MATH_STRIDE, 2);
    double w32 = 0, w16 = 0;
    for (int d = 0; d < MATH_HD; d++) {
        double e32 = 0, m32 = 0, e16 = 0, m16 = 0;
        for (int p = 0; p < MATH_NPOS; p++) {
            double a = (double)w[p] * v[p * MATH_STRIDE + 8 + d];
            double b = (double)elm_fp16_to_f32(elm_f32_to_fp16(w[p])) *
                       elm_fp16_to_f32(vh[p * MATH_STRIDE + 8 + d]);
            e32 += a;
            m32 += fabs(a);
            e16 += b;
            m16 += fabs(b);
        }
        w32 = fmax(w32, fabs(out32[d] - e32) / m32);
        w16 = fmax(w16, fabs(out16[d] - e16) / m16);
    }
    const double bmix = gamma_n((MATH_NPOS + 15) / 16 + 4);
    print_message("kv_mix    f32 %.2e f16 %.2e (bound %.2e)\n", w32, w16, bmix);
    assert_true(w32 <= bmix && w16 <= bmix);
    free(vh);
    free(v);
    free(w);
}

static void test_ops_math(void **state)
{
    (void)state;
    const struct elm_kernels *k = &elm_kernels_ref;
    float *x = elm_test_xmalloc(MATH_N * sizeof *x), *g = elm_test_xmalloc(MATH_N * sizeof *g),
          *y = elm_test_xmalloc(MATH_N * sizeof *y);
    check_rmsnorm_rope(k, x, g, y);
    check_softmax_silu(k, x, g, y);
    check_kv(k);
    free(x);
    free(g);
    free(y);
}

/* FNV-1a over bytes */
static uint64_t digest(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Runs every float-producing kernel of a variant on fixed inputs and digests the output bits.
 * Inputs come from the integer generator and the quantizers, rope angles from a fixed table:
 * nothing here calls libm except through the kernels' own exact operations (fmaf, ldexpf,
 * sqrtf), so the digest is the same on every machine. */
static uint64_t kernel_digest(const struct elm_kernels *k)
{
    enum { N = 1024, HD = 64, NPOS = 77, STRIDE = 128 };
    uint64_t h = 0xcbf29ce484222325ull;
    float *w = elm_test_xmalloc(N * sizeof *w), *a = elm_test_xmalloc(N * sizeof *a),
          *y = elm_test_xmalloc(N * sizeof *y);
    void *wq = elm_test_xmalloc(N * sizeof(float)), *aq = elm_test_xmalloc(N * sizeof(float));
    for (size_t i = 0; i < ELM_TEST_N_WEIGHT_TYPES; i++) {
        enum elm_type t = elm_test_weight_types[i], dt = elm_type_get(t)->dot_type;
        for (int round = 0; round < 3; round++) {
            fill_uniform(w, N, 300 + round);
            fill_uniform(a, N, 400 + round);
            if (round == 2)
                for (int j = 0; j < N; j++)
                    w[j] = 0.25f * w[j] + 0.5f; /* an offset row, for the min terms */
            assert_int_equal(elm_quantize_row(t, w, wq, N), 0);
            k->from_float[dt](a, aq, N);
            float s;
            k->vec_dot[t](N, &s, wq, aq);
            h = digest(h, &s, sizeof s);
        }
    }
    fill_uniform(a, N, 500);
    fill_uniform(w, N, 501);
    k->rmsnorm(y, a, w, 256, 1e-6f);
    h = digest(h, y, 256 * sizeof *y);
    float cs[HD];
    for (int i = 0; i < HD / 2; i++) {
        cs[2 * i] = w[100 + i]; /* any values: the rotation arithmetic is what is pinned */
        cs[2 * i + 1] = w[200 + i];
    }
    for (int neox = 0; neox < 2; neox++) {
        memcpy(y, a, HD * sizeof *y);
        k->rope(y, HD, cs, neox);
        h = digest(h, y, HD * sizeof *y);
    }
    for (int i = 0; i < NPOS; i++)
        y[i] = 8.0f * a[i];
    k->softmax(y, NPOS);
    h = digest(h, y, NPOS * sizeof *y);
    memcpy(y, a, 768 * sizeof *y);
    for (int i = 0; i < 768; i++)
        y[i] *= 12.0f;
    k->silu_mul(y, w, 768);
    h = digest(h, y, 768 * sizeof *y);
    float *v = elm_test_xmalloc(NPOS * STRIDE * sizeof *v), out[HD], s;
    fill_uniform(v, NPOS * STRIDE, 502);
    uint16_t *vh = to_half(v, NPOS * STRIDE), *qh = to_half(a, N);
    for (int n = 64; n <= 136; n += 72) {
        k->kv_dot[ELM_TYPE_F32](n, &s, v, a);
        h = digest(h, &s, sizeof s);
        k->kv_dot[ELM_TYPE_F16](n, &s, vh, qh);
        h = digest(h, &s, sizeof s);
    }
    memcpy(y, a, NPOS * sizeof *y);
    k->softmax(y, NPOS);
    mix_all(k, ELM_TYPE_F32, NPOS, HD, out, y, v, STRIDE, 4);
    h = digest(h, out, sizeof out);
    mix_all(k, ELM_TYPE_F16, NPOS, HD, out, y, vh, STRIDE, 2);
    h = digest(h, out, sizeof out);
    free(v);
    free(vh);
    free(qh);
    free(w);
    free(a);
    free(y);
    free(wq);
    free(aq);
    return h;
}

/* The reference's bits are those that reproduced every zoo reference exactly (docs/kernels.md);
 * this digest was taken from that version. If it changes, the zoo test says whether the new
 * order still matches llama.cpp; only then update it. */
#define REF_KERNEL_DIGEST 0x582f6091f44717d3ull

static void test_ops_exact(void **state)
{
    (void)state;
    const uint64_t ref = kernel_digest(&elm_kernels_ref);
    print_message("reference kernel digest 0x%016llx\n", (unsigned long long)ref);
    assert_true(ref == REF_KERNEL_DIGEST);
}

/* Each variant but ref (one case each, skipped when this CPU cannot run it) gives the same
 * digest. */
static void test_ops_exact_variant(void **state)
{
    const struct elm_kernels *v = elm_test_variant(state);
    assert_true(kernel_digest(v) == REF_KERNEL_DIGEST);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static void test_dispatch(void **state)
{
    (void)state;
    const struct elm_kernels *ref = elm_kernels_get("ref");
    assert_non_null(ref);
    assert_string_equal(ref->name, "ref");
    assert_non_null(elm_kernels_active());
    assert_true(elm_kernels_cpu_has("ref"));
    assert_false(elm_kernels_cpu_has("sse9"));
    assert_null(elm_kernels_get("sse9"));
    assert_null(elm_kernels_get(NULL));
    /* the reference is complete for what the type table promises */
    for (uint32_t t = 0; t < ELM_TYPE_COUNT; t++) {
        const struct elm_type_info *ti = elm_type_get(t);
        if (!ti)
            continue;
        assert_non_null(ref->to_float[t]);
        assert_non_null(ref->from_float[t]);
        if (ti->is_weight)
            assert_non_null(ref->vec_dot[t]);
    }
    assert_non_null(ref->rmsnorm);
    assert_non_null(ref->rope_table);
    assert_non_null(ref->rope);
    assert_non_null(ref->softmax);
    assert_non_null(ref->silu_mul);
    assert_non_null(ref->kv_dot[ELM_TYPE_F32]);
    assert_non_null(ref->kv_dot[ELM_TYPE_F16]);
    assert_non_null(ref->kv_mix[ELM_TYPE_F32]);
    assert_non_null(ref->kv_mix[ELM_TYPE_F16]);
    /* the dispatch table lists ref, last (the fallback that always runs) */
    size_t n = 0;
    while (elm_kernels_variant(n))
        n++;
    assert_true(n >= 1);
    assert_string_equal(elm_kernels_variant(n - 1), "ref");
}

/* A variant offered (one case per variant but ref; skipped when this CPU cannot run it) runs on
 * this CPU and has no holes where ref has kernels. */
static void test_dispatch_variant(void **state)
{
    const struct elm_kernels *ref = elm_kernels_get("ref");
    const char *name = elm_test_variant_name(state);
    const struct elm_kernels *v = elm_kernels_get(name);
    assert_string_equal(v->name, name);
    assert_true(elm_kernels_cpu_has(name)); /* the probe and the table agree */
    for (int t = 0; t < ELM_TYPE_COUNT; t++) {
        assert_true(ref->to_float[t] == NULL || v->to_float[t] != NULL);
        assert_true(ref->from_float[t] == NULL || v->from_float[t] != NULL);
        assert_true(ref->vec_dot[t] == NULL || v->vec_dot[t] != NULL);
        assert_true(ref->kv_dot[t] == NULL || v->kv_dot[t] != NULL);
        assert_true(ref->kv_mix[t] == NULL || v->kv_mix[t] != NULL);
    }
    assert_true(v->rmsnorm && v->rope_table && v->rope && v->softmax && v->silu_mul);
}

/* ELM_KERNEL is read once per process, so the override is checked in child processes: this
 * binary re-executed with ELM_TEST_PRINT_KERNEL set prints the active variant's name.
 * env NULL runs the child with ELM_KERNEL unset. */
static void run_child(const char *env, char *out_buf, size_t out_len, char *err_buf, size_t err_len)
{
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        if (env)
            setenv("ELM_KERNEL", env, 1);
        else
            unsetenv("ELM_KERNEL");
        setenv("ELM_TEST_PRINT_KERNEL", "1", 1);
        execl("/proc/self/exe", "test_ops", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    size_t no = 0, ne = 0;
    ssize_t r;
    memset(out_buf, 0, out_len);
    memset(err_buf, 0, err_len);
    while (no < out_len - 1 && (r = read(out[0], out_buf + no, out_len - 1 - no)) > 0)
        no += (size_t)r;
    while (ne < err_len - 1 && (r = read(err[0], err_buf + ne, err_len - 1 - ne)) > 0)
        ne += (size_t)r;
    close(out[0]);
    close(err[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_kernel_override(void **state)
{
    (void)state;
    char probe[64], forced[64], bogus[64], err[1024];
    run_child(NULL, probe, sizeof probe, err, sizeof err);
    assert_null(strstr(err, "ELM_KERNEL"));
    run_child("ref", forced, sizeof forced, err, sizeof err);
    assert_string_equal(forced, "ref\n");
    assert_null(strstr(err, "ELM_KERNEL"));
    /* unknown name: a warning, and the probe's choice */
    run_child("bogus", bogus, sizeof bogus, err, sizeof err);
    assert_non_null(strstr(err, "ELM_KERNEL"));
    assert_string_equal(bogus, probe);
    print_message("probe picks %s", probe);
}

/* ELM_ORDER_AVX2 (kernels/ref/order8.c): the avx512 order is the table unchanged; the avx2
 * table's softmax, SiLU and attention are the math (its bits are held to llama.cpp's in
 * test_eval), including exp's over/underflow path (|n| > 126); its kv_mix over runs of 32
 * positions gives the bits of one call, as the paged cache needs. */
static void test_order_avx2(void **state)
{
    (void)state;
    const struct elm_kernels *ref = elm_kernels_get("ref");
    struct elm_kernels same, t;
    elm_kernels_with_order(&same, ref, ELM_ORDER_AVX512);
    assert_memory_equal(&same, ref, sizeof same);
    elm_kernels_with_order(&t, ref, ELM_ORDER_AVX2);
    assert_true(t.softmax != ref->softmax && t.kv_fold != ref->kv_fold);
    assert_true(t.vec_dot[ELM_TYPE_Q8_0] == ref->vec_dot[ELM_TYPE_Q8_0]);

    enum { N = 77, HD = 64 };
    float x[N], w[N], v[N * HD], lanes1[16 * HD] = {0}, lanes2[16 * HD] = {0}, o1[HD], o2[HD];
    fill_uniform(x, N, 700);
    for (int i = 0; i < N; i++)
        x[i] *= i % 5 == 0 ? 120.0f : 20.0f; /* exp(x - max) down to e^-240: 0 and subnormals */
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < N; i++)
        mx = fmax(mx, x[i]);
    for (int i = 0; i < N; i++)
        sum += exp((double)x[i] - mx);
    memcpy(w, x, sizeof w);
    t.softmax(w, N);
    for (int i = 0; i < N; i++)
        assert_true(fabs(w[i] - exp((double)x[i] - mx) / sum) <=
                    1e-6 * exp((double)x[i] - mx) / sum + 1e-40);

    float g[N], u[N];
    fill_uniform(g, N, 701);
    fill_uniform(u, N, 702);
    for (int i = 0; i < N; i++)
        g[i] *= 8.0f;
    float gs[N];
    memcpy(gs, g, sizeof gs);
    t.silu_mul(gs, u, N);
    for (int i = 0; i < N; i++)
        assert_true(fabs(gs[i] - g[i] / (1.0 + exp(-(double)g[i])) * u[i]) <= 1e-5);

    fill_uniform(v, N * HD, 703);
    float s;
    t.kv_dot[ELM_TYPE_F32](HD, &s, v, v + HD);
    double dot = 0.0;
    for (int d = 0; d < HD; d++)
        dot += (double)v[d] * v[HD + d];
    assert_true(fabs(s - dot) <= 1e-5);

    t.kv_mix[ELM_TYPE_F32](N, HD, lanes1, w, v, HD * (int64_t)sizeof(float));
    t.kv_mix[ELM_TYPE_F32](32, HD, lanes2, w, v, HD * (int64_t)sizeof(float));
    t.kv_mix[ELM_TYPE_F32](N - 32, HD, lanes2, w + 32, v + 32 * HD, HD * (int64_t)sizeof(float));
    t.kv_fold(HD, lanes1, o1);
    t.kv_fold(HD, lanes2, o2);
    assert_memory_equal(o1, o2, sizeof o1);
    for (int d = 0; d < HD; d++) {
        double e = 0.0;
        for (int p = 0; p < N; p++)
            e += (double)w[p] * v[p * HD + d];
        assert_true(fabs(o1[d] - e) <= 1e-5);
    }
}

static int add_tls(struct dl_phdr_info *info, size_t size, void *total)
{
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS)
            *(size_t *)total += info->dlpi_phdr[i].p_memsz;
    return 0;
}

/* Static TLS is zeroed for every thread of every program that links the engine, before main()
 * (common/scratch.h): the kernels' panels must live in per-thread scratch, not _Thread_local
 * arrays. This program links every kernel variant, so a panel declared as TLS shows here. */
static void test_static_tls(void **state)
{
    (void)state;
    size_t total = 0;
    dl_iterate_phdr(add_tls, &total);
    printf("static TLS of this program and its libraries: %zu bytes\n", total);
    assert_in_range(total, 0, 16384);
}

int main(void)
{
    if (getenv("ELM_TEST_PRINT_KERNEL")) {
        printf("%s\n", elm_kernels_active()->name);
        return 0;
    }
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_ops_math),
        cmocka_unit_test(test_ops_exact),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_kernel_override),
        cmocka_unit_test(test_order_avx2),
        cmocka_unit_test(test_static_tls),
    };
    struct CMUnitTest tests[64];
    size_t n = sizeof fixed / sizeof *fixed;
    memcpy(tests, fixed, sizeof fixed);
    elm_test_add_variant_cases(tests, &n, 64, "test_ops_exact", test_ops_exact_variant, false);
    elm_test_add_variant_cases(tests, &n, 64, "test_dispatch", test_dispatch_variant, false);
    return _cmocka_run_group_tests("test_ops", tests, n, NULL, NULL);
}
