/*
 * compare.c - two audio files side by side (`immerge compare`): lengths, each channel's RMS and
 * peak, integrated loudness (EBU R128, libavfilter's ebur128), the offset between them found by
 * cross-correlation, and the SNR of B against A once aligned.
 *
 * Each file is decoded by source.c, like a merge's sources, and converted by convert.c twice:
 * to float in its own rate and layout (its statistics and loudness), and to A's rate and layout
 * (the comparison). Memory is bounded: the offset is searched over a fixed excerpt (the first
 * window + 2 * search seconds), then both files are streamed again, aligned, a block at a time.
 */
#include "engine/report/report.h"

#include <cjson/cJSON.h>
#include <libavutil/tx.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096
#define MAX_CHANNELS 64

enum { OWN, COMMON };

/* One file being read: decoded, then converted into two FIFOs (OWN, COMMON). */
typedef struct reader {
    imm_source *src;
    imm_target_plan plan[2];
    imm_convert *cv[2];
    AVAudioFifo *fifo[2];
    int64_t drop[2]; /* samples still to be dropped from the head of each FIFO */
    int ended;
    /* its statistics (OWN) */
    int64_t samples, common_samples;
    double sum2[MAX_CHANNELS], peak[MAX_CHANNELS];
    imm_loudness *meter;
} reader;

static void reader_close(reader *r)
{
    for (int k = 0; k < 2; k++) {
        imm_convert_free(r->cv[k]);
        av_audio_fifo_free(r->fifo[k]);
        av_channel_layout_uninit(&r->plan[k].layout);
    }
    imm_loudness_free(r->meter);
    imm_source_close(r->src);
    memset(r, 0, sizeof(*r));
}

/* Opens uri; COMMON is `common`'s rate and layout (NULL: its own, for A). */
static imm_err reader_open(imm_storage *st, const char *uri, const imm_target_plan *common,
                           reader *r, imm_error *err)
{
    imm_source_req req = {.uri = (char *)uri};
    imm_stream_select sel = {0};
    imm_err e = imm_source_open(st, &req, &sel, &r->src, err);
    if (e)
        return e;
    const imm_source_info *in = imm_source_get_info(r->src);
    if (in->channels > MAX_CHANNELS)
        return imm_error_set(err, IMM_EMEDIA, "%s has %d channels; compare takes at most %d.",
                             uri, in->channels, MAX_CHANNELS);
    for (int k = 0; k < 2; k++) {
        imm_target_plan *p = &r->plan[k];
        const imm_target_plan *like = k == COMMON && common ? common : NULL;
        p->sample_rate = like ? like->sample_rate : in->sample_rate;
        p->sample_fmt = AV_SAMPLE_FMT_FLTP;
        if (av_channel_layout_copy(&p->layout, like ? &like->layout : &in->layout) < 0 ||
            !(r->cv[k] = imm_convert_new(p)) ||
            !(r->fifo[k] = av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, p->layout.nb_channels, BLOCK)))
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    return IMM_OK;
}

/* Drops what is still to be dropped from FIFO k's head. */
static void drop(reader *r, int k)
{
    int n = (int)FFMIN(r->drop[k], av_audio_fifo_size(r->fifo[k]));
    av_audio_fifo_drain(r->fifo[k], n);
    r->drop[k] -= n;
}

/* Decodes until FIFO k holds `want` samples (after its drop) or the file ends. */
static imm_err fill(reader *r, int k, int want, imm_error *err)
{
    AVFrame *f;
    int offset, count;
    imm_err e;
    drop(r, k);
    while (!r->ended && av_audio_fifo_size(r->fifo[k]) < want) {
        if ((e = imm_source_read(r->src, &f, &offset, &count, err)))
            return e;
        for (int j = 0; j < 2; j++) {
            int64_t skipped;
            if ((e = f ? imm_convert_push(r->cv[j], f, offset, count, 0, &skipped, r->fifo[j], err)
                       : imm_convert_finish(r->cv[j], r->fifo[j], err)))
                return e;
            drop(r, j);
        }
        r->ended = !f;
    }
    return IMM_OK;
}

/* Up to n samples from FIFO k into a fresh frame (NULL when there are none). */
static AVFrame *take(reader *r, int k, int n, imm_error *err)
{
    const imm_target_plan *p = &r->plan[k];
    n = FFMIN(n, av_audio_fifo_size(r->fifo[k]));
    if (n <= 0)
        return NULL;
    AVFrame *f = av_frame_alloc();
    if (f) {
        f->nb_samples = n;
        f->format = AV_SAMPLE_FMT_FLTP;
        f->sample_rate = p->sample_rate;
    }
    if (!f || av_channel_layout_copy(&f->ch_layout, &p->layout) < 0 ||
        av_frame_get_buffer(f, 0) < 0) {
        av_frame_free(&f);
        imm_error_set(err, IMM_EINTERNAL, "out of memory");
        return NULL;
    }
    av_audio_fifo_read(r->fifo[k], (void **)f->extended_data, n);
    return f;
}

/* The mean of f's channels into out[0..nb_samples). */
static void mono(const AVFrame *f, float *out)
{
    int channels = f->ch_layout.nb_channels;
    for (int i = 0; i < f->nb_samples; i++) {
        float sum = 0;
        for (int c = 0; c < channels; c++)
            sum += ((const float *)f->extended_data[c])[i];
        out[i] = sum / (float)channels;
    }
}

/* The first n samples (mono, COMMON) of a file into x; *got how many there were. */
static imm_err excerpt(imm_storage *st, const char *uri, const imm_target_plan *common, float *x,
                       int n, int *got, imm_error *err)
{
    reader r = {0};
    imm_err e = reader_open(st, uri, common, &r, err);
    *got = 0;
    while (!e && *got < n && !(e = fill(&r, COMMON, BLOCK, err))) {
        AVFrame *f = take(&r, COMMON, n - *got, err);
        if (!f) {
            if (r.ended)
                break;
            continue;
        }
        mono(f, x + *got);
        *got += f->nb_samples;
        av_frame_free(&f);
        av_audio_fifo_reset(r.fifo[OWN]); /* not needed here */
    }
    reader_close(&r);
    return e;
}

/* FFmpeg 5.1's power-of-two FFTs stop at 2^17 points (larger ones fall back to an O(n^2)
 * transform): longer excerpts are correlated at a reduced rate first. */
#define MAX_FFT (1 << 17)

/* Correlations this close to the highest count as equal: a periodic signal matches at every
 * period, and the lag nearest to none is the one meant. */
#define TIE 1e-4

#define MAX_PEAKS 4096 /* peaks of one phase's reduced-rate correlation looked at again ... */
#define LOOSE 0.02     /* ... if within this of the highest */
#define SHORT 4096     /* samples of A the peaks are first ranked on at the full rate ... */
#define SHORTLIST 32   /* ... and how many of them are then measured over the whole window */

/* Normalised cross-correlation of a[0, window) against b[k, k + window) for k in [0, lags),
 * via FFT; ks[0, *nk) get its local peaks within LOOSE of the highest (at most MAX_PEAKS, the
 * highest first, then the nearest to `center`); *best the highest value (-2: no energy). */
static imm_err correlate(const float *a, const float *b, int window, int lags, int center,
                         int *ks, int *nk, double *best, imm_error *err)
{
    int span = window + lags - 1, n = 1;
    while (n < span + window)
        n <<= 1;
    AVComplexFloat *fa = av_calloc((size_t)n, sizeof(*fa)), *fb = av_calloc((size_t)n, sizeof(*fb));
    AVComplexFloat *t = av_calloc((size_t)n, sizeof(*t));
    double *energy = av_calloc((size_t)span + 1, sizeof(*energy));
    AVTXContext *fwd = NULL, *inv = NULL;
    av_tx_fn fwd_fn, inv_fn;
    float scale = 1.0f;
    imm_err e = IMM_OK;
    *best = -2;
    *nk = 0;
    if (!fa || !fb || !t || !energy ||
        av_tx_init(&fwd, &fwd_fn, AV_TX_FLOAT_FFT, 0, n, &scale, 0) < 0 ||
        av_tx_init(&inv, &inv_fn, AV_TX_FLOAT_FFT, 1, n, &scale, 0) < 0) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto done;
    }
    double ea = 0;
    for (int i = 0; i < window; i++) {
        t[i].re = a[i];
        ea += (double)a[i] * a[i];
    }
    fwd_fn(fwd, fa, t, sizeof(*t));
    memset(t, 0, (size_t)n * sizeof(*t));
    for (int i = 0; i < span; i++) {
        t[i].re = b[i];
        energy[i + 1] = energy[i] + (double)b[i] * b[i];
    }
    fwd_fn(fwd, fb, t, sizeof(*t));
    for (int i = 0; i < n; i++) { /* B times the conjugate of A: correlation, not convolution */
        AVComplexFloat x = fb[i], y = fa[i];
        fb[i].re = x.re * y.re + x.im * y.im;
        fb[i].im = x.im * y.re - x.re * y.im;
    }
    inv_fn(inv, t, fb, sizeof(*t));
    double *c = energy; /* reused: energy[k + window] is not needed once c[k] is known */
    int top_k = -1;
    for (int k = 0; k < lags; k++) {
        double eb = energy[k + window] - energy[k];
        c[k] = ea > 0 && eb > 0 ? t[k].re / n / sqrt(ea * eb) : -2;
        if (c[k] > *best) {
            *best = c[k];
            top_k = k;
        }
    }
    if (top_k < 0)
        goto done;
    ks[(*nk)++] = top_k;
    for (int dist = 0; dist < lags && *nk < MAX_PEAKS; dist++)
        for (int side = 0; side < 2 && *nk < MAX_PEAKS; side++) {
            int k = center + (side ? dist : -dist);
            if ((side && !dist) || k < 0 || k >= lags || k == top_k || c[k] < *best - LOOSE ||
                (k > 0 && c[k - 1] > c[k]) || (k + 1 < lags && c[k + 1] > c[k]))
                continue;
            ks[(*nk)++] = k;
        }
done:
    av_tx_uninit(&fwd);
    av_tx_uninit(&inv);
    av_free(fa);
    av_free(fb);
    av_free(t);
    av_free(energy);
    return e;
}

/* Normalised correlation of a[0, window) with b[k, k + window), directly. */
static double correlation_at(const float *a, const float *b, int window, int k)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < window; i++) {
        ab += (double)a[i] * b[k + i];
        aa += (double)a[i] * a[i];
        bb += (double)b[k + i] * b[k + i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : -2;
}

/* x[0, n) averaged over runs of d samples into out[0, n / d). */
static void reduce(const float *x, int n, int d, float *out)
{
    for (int i = 0; i + d <= n; i += d) {
        float sum = 0;
        for (int j = 0; j < d; j++)
            sum += x[i + j];
        out[i / d] = sum / (float)d;
    }
}

/* Where in a[0, window) the SHORT samples with the most energy start. */
static int loudest(const float *a, int window)
{
    double e = 0, most = -1;
    int at = 0;
    for (int i = 0; i < window; i++) {
        e += (double)a[i] * a[i];
        if (i >= SHORT)
            e -= (double)a[i - SHORT] * a[i - SHORT];
        if (i >= SHORT - 1 && e > most) {
            most = e;
            at = i - SHORT + 1;
        }
    }
    return at;
}

/* The normalised correlation of A with B at lag L over all the two excerpts share: a delayed
 * copy of a periodic signal matches one period off as well as at its delay within the window,
 * but only at its delay over the whole excerpt (its leading silence, its ends). */
static double overlap_correlation(const float *a, int na, const float *b, int nb, int lag)
{
    int from = FFMAX(0, -lag), to = FFMIN(na, nb - lag);
    return to - from < 64 ? -2 : correlation_at(a + from, b + from + lag, to - from, 0);
}

typedef struct scored {
    int j;      /* a lag, as an index into B's excerpt (lag + search) */
    double c;
} scored;

static int by_score(const void *x, const void *y)
{
    const scored *p = x, *q = y;
    return (p->c < q->c) - (p->c > q->c);
}

/* The peaks of the correlation at a rate reduced by d (so that the FFT stays within MAX_FFT),
 * once for each of the d phases of B against A's grid, so that every full-rate lag lies on the
 * grid of one: an exact match off the grid of a single pass would lose to a near one on it. Each
 * peak and its neighbours go into js[*n] as full-rate lags, their scores over SHORT samples of A
 * (cheap, and an exact match still stands out from one period off); *best the highest reduced
 * value. */
static imm_err peaks(const float *a, const float *b, int search, int window, int d, scored *js,
                     int *n, double *best, imm_error *err)
{
    int lags = 2 * search + 1, nk;
    float *ra = malloc(sizeof(*ra) * (size_t)(window / d + 1));
    float *rb = malloc(sizeof(*rb) * (size_t)((window + lags) / d + 1));
    int *ks = malloc(sizeof(*ks) * MAX_PEAKS);
    double *tops = malloc(sizeof(*tops) * (size_t)d);
    imm_err e = IMM_OK;
    *best = -2;
    *n = 0;
    if (!ra || !rb || !ks || !tops) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto done;
    }
    int shrt = FFMIN(SHORT, window);
    int from = FFMIN(loudest(a + search, window), window - shrt);
    reduce(a + search, window, d, ra);
    for (int p = 0; p < d && !e; p++) {
        reduce(b + p, window + lags - 1 - p, d, rb);
        e = correlate(ra, rb, window / d, (lags - 1 - p) / d + 1, (search - p) / d, ks, &nk,
                      &tops[p], err);
        for (int i = 0; i < nk && !e; i++)
            for (int j = FFMAX(0, ks[i] * d + p - 1); j <= FFMIN(lags - 1, ks[i] * d + p + 1); j++)
                js[(*n)++] = (scored){j, correlation_at(a + search + from, b + from, shrt, j)};
        *best = FFMAX(*best, tops[p]);
    }
done:
    free(ra);
    free(rb);
    free(ks);
    free(tops);
    return e;
}

/* The lag L in [-search, search] at which B[i + L] best matches A[i]: A[search, search + window)
 * against B[0, window + 2 search). The peaks of a reduced-rate correlation (peaks()), ranked at
 * the full rate over SHORT samples; the best of them and lag 0 then measured over the whole
 * window. Of those that match as well as the best (within TIE), the one that matches best over
 * all the excerpts share wins, and of equals the lag nearest to 0: a periodic signal matches
 * itself one period away as well as at none, and identical files must be found identical. */
static imm_err find_offset(const float *a, int na, const float *b, int nb, int search, int window,
                           int64_t *lag, double *corr, imm_error *err)
{
    search = FFMIN(search, FFMIN(na, nb) / 4);
    window = FFMIN(window, FFMIN(na - search, nb - 2 * search));
    *lag = 0;
    *corr = NAN;
    if (window < 64)
        return IMM_OK; /* too short to tell */
    int lags = 2 * search + 1, d = 1, n = 0;
    while ((2 * window + lags) / d > MAX_FFT / 2)
        d++;
    scored *js = malloc(sizeof(*js) * ((size_t)d * MAX_PEAKS * 3 + 1));
    double best = -2;
    imm_err e = js ? peaks(a, b, search, window, d, js, &n, &best, err)
                   : imm_error_set(err, IMM_EINTERNAL, "out of memory");
    if (e || best <= -2) {
        free(js);
        return e;
    }
    qsort(js, (size_t)n, sizeof(*js), by_score);
    n = FFMIN(n, SHORTLIST);
    js[n++] = (scored){search, 0}; /* lag 0 */
    double top = -2, wide = -3;
    for (int i = 0; i < n; i++)
        top = FFMAX(top, js[i].c = correlation_at(a + search, b, window, js[i].j));
    int at = -1;
    for (int i = 0; i < n; i++) {
        if (js[i].c < top - TIE)
            continue;
        double w = overlap_correlation(a, na, b, nb, js[i].j - search);
        int nearer = at < 0 || abs(js[i].j - search) < abs(js[at].j - search);
        if (w > wide + TIE || (w >= wide - TIE && nearer)) {
            at = i;
            wide = FFMAX(w, wide);
        }
    }
    *lag = js[at].j - search;
    *corr = js[at].c;
    free(js);
    return IMM_OK;
}

static imm_err account(reader *r, AVFrame *f, imm_error *err)
{
    int channels = f->ch_layout.nb_channels;
    for (int c = 0; c < channels; c++) {
        const float *x = (const float *)f->extended_data[c];
        for (int i = 0; i < f->nb_samples; i++) {
            r->sum2[c] += (double)x[i] * x[i];
            r->peak[c] = fmax(r->peak[c], fabs(x[i]));
        }
    }
    r->samples += f->nb_samples;
    return imm_loudness_add(r->meter, f, err);
}

static double db(double x)
{
    return x > 0 ? 20 * log10(x) : -HUGE_VAL;
}

static void add_db(cJSON *o, const char *name, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, name, (double)llround(v * 100) / 100);
    else
        cJSON_AddNullToObject(o, name);
}

static cJSON *file_json(const char *uri, const reader *r)
{
    const imm_source_info *in = imm_source_get_info(r->src);
    const imm_target_plan *p = &r->plan[OWN];
    cJSON *o = cJSON_CreateObject();
    char layout[64];
    cJSON_AddStringToObject(o, "URI", uri);
    cJSON_AddStringToObject(o, "Format", in->format);
    cJSON_AddStringToObject(o, "Codec", in->codec);
    cJSON_AddNumberToObject(o, "SampleRate", p->sample_rate);
    cJSON_AddNumberToObject(o, "Channel", p->layout.nb_channels);
    av_channel_layout_describe(&p->layout, layout, sizeof(layout));
    cJSON_AddStringToObject(o, "ChannelLayout", layout);
    cJSON_AddNumberToObject(o, "Samples", (double)r->samples);
    cJSON_AddNumberToObject(o, "Duration", (double)r->samples / p->sample_rate);
    cJSON *chs = cJSON_AddArrayToObject(o, "Channels");
    for (int c = 0; c < p->layout.nb_channels; c++) {
        cJSON *ch = cJSON_CreateObject();
        add_db(ch, "RmsDb", r->samples ? db(sqrt(r->sum2[c] / (double)r->samples)) : -HUGE_VAL);
        add_db(ch, "PeakDb", db(r->peak[c]));
        cJSON_AddItemToArray(chs, ch);
    }
    add_db(o, "IntegratedLoudness", imm_loudness_integrated(r->meter));
    return o;
}

imm_err imm_compare(const char *uri_a, const char *uri_b, const imm_compare_options *opt,
                    char **json, int *match, imm_error *err)
{
    reader a = {0}, b = {0};
    float *xa = NULL, *xb = NULL;
    imm_err e;
    double snr_signal = 0, snr_noise = 0, corr = NAN;
    int64_t lag = 0;
    *json = NULL;
    *match = 0;
    /* A's rate and layout are the comparison's; its probe says what they are. */
    if ((e = reader_open(opt->storage, uri_a, NULL, &a, err)))
        goto done;
    int rate = a.plan[OWN].sample_rate;
    int search = (int)(opt->search_seconds * rate), window = (int)(opt->window_seconds * rate);
    int want = window + 2 * search, na = 0, nb = 0;
    if (!(xa = malloc(sizeof(*xa) * (size_t)FFMAX(want, 1))) ||
        !(xb = malloc(sizeof(*xb) * (size_t)FFMAX(want, 1)))) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto done;
    }
    if ((e = excerpt(opt->storage, uri_a, &a.plan[OWN], xa, want, &na, err)) ||
        (e = excerpt(opt->storage, uri_b, &a.plan[OWN], xb, want, &nb, err)) ||
        (e = find_offset(xa, na, xb, nb, search, window, &lag, &corr, err)))
        goto done;
    free(xa);
    free(xb);
    xa = xb = NULL;

    /* Both again from the start, aligned: B[i + lag] against A[i]. */
    if ((e = reader_open(opt->storage, uri_b, &a.plan[OWN], &b, err)) ||
        (e = imm_loudness_new(a.plan[OWN].sample_rate, &a.plan[OWN].layout, AV_SAMPLE_FMT_FLTP,
                              &a.meter, err)) ||
        (e = imm_loudness_new(b.plan[OWN].sample_rate, &b.plan[OWN].layout, AV_SAMPLE_FMT_FLTP,
                              &b.meter, err)))
        goto done;
    (lag > 0 ? &b : &a)->drop[COMMON] = lag > 0 ? lag : -lag;
    int channels = a.plan[OWN].layout.nb_channels;
    for (;;) {
        for (reader *r = &a; r; r = r == &a ? &b : NULL) {
            /* All of OWN is taken each time: at a higher rate than A's it fills faster. */
            if ((e = fill(r, COMMON, BLOCK, err)) || (e = fill(r, OWN, 1, err)))
                goto done;
            AVFrame *f;
            while (!e && (f = take(r, OWN, BLOCK, err))) {
                e = account(r, f, err);
                av_frame_free(&f);
            }
            if (e)
                goto done;
        }
        int n = FFMIN(av_audio_fifo_size(a.fifo[COMMON]), av_audio_fifo_size(b.fifo[COMMON]));
        AVFrame *fa = take(&a, COMMON, n, err), *fb = take(&b, COMMON, n, err);
        for (int c = 0; fa && fb && c < channels; c++) {
            const float *x = (const float *)fa->extended_data[c];
            const float *y = (const float *)fb->extended_data[c];
            for (int i = 0; i < n; i++) {
                snr_signal += (double)x[i] * x[i];
                snr_noise += (double)(x[i] - y[i]) * (x[i] - y[i]);
            }
        }
        av_frame_free(&fa);
        av_frame_free(&fb);
        a.common_samples += n;
        /* Once one file has ended, what the other has beyond it is only counted. */
        if ((a.ended && !av_audio_fifo_size(a.fifo[COMMON])) ||
            (b.ended && !av_audio_fifo_size(b.fifo[COMMON]))) {
            av_audio_fifo_reset(a.fifo[COMMON]);
            av_audio_fifo_reset(b.fifo[COMMON]);
        }
        if (a.ended && b.ended && !av_audio_fifo_size(a.fifo[OWN]) &&
            !av_audio_fifo_size(b.fifo[OWN]))
            break;
    }
    if ((e = imm_loudness_add(a.meter, NULL, err)) || (e = imm_loudness_add(b.meter, NULL, err)))
        goto done;

    cJSON *o = cJSON_CreateObject(), *why = NULL;
    if (!o) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto done;
    }
    cJSON_AddItemToObject(o, "A", file_json(uri_a, &a));
    cJSON_AddItemToObject(o, "B", file_json(uri_b, &b));
    /* B's length at A's rate, less the offset: how much longer B's content runs. */
    int64_t b_at_a = av_rescale_rnd(b.samples, rate, b.plan[OWN].sample_rate, AV_ROUND_NEAR_INF);
    int64_t length_diff = b_at_a - a.samples;
    double snr = snr_noise > 0 ? 10 * log10(snr_signal / snr_noise) : HUGE_VAL;
    double la = imm_loudness_integrated(a.meter), lb = imm_loudness_integrated(b.meter);
    double loud_diff = isfinite(la) && isfinite(lb) ? lb - la : NAN;
    cJSON_AddNumberToObject(o, "LengthDifference", (double)length_diff);
    cJSON_AddNumberToObject(o, "OffsetSamples", (double)lag);
    if (isfinite(corr))
        cJSON_AddNumberToObject(o, "Correlation", (double)llround(corr * 10000) / 10000);
    cJSON_AddNumberToObject(o, "ComparedSamples", (double)a.common_samples);
    add_db(o, "Snr", snr);
    cJSON_AddBoolToObject(o, "Identical", snr_noise == 0 && length_diff == 0 && lag == 0);
    add_db(o, "LoudnessDifference", loud_diff);
    why = cJSON_AddArrayToObject(o, "Mismatches");
    char line[200];
#define MISMATCH(...) (snprintf(line, sizeof(line), __VA_ARGS__), \
                       cJSON_AddItemToArray(why, cJSON_CreateString(line)))
    if (llabs(length_diff) > opt->max_length_diff)
        MISMATCH("length differs by %lld samples (at most %lld allowed)", (long long)length_diff,
                 (long long)opt->max_length_diff);
    if (llabs(lag) > opt->max_offset)
        MISMATCH("B is offset by %lld samples (at most %lld allowed)", (long long)lag,
                 (long long)opt->max_offset);
    if (snr < opt->min_snr)
        MISMATCH("SNR %.2f dB is below %.2f dB", snr, opt->min_snr);
    if (isfinite(la) != isfinite(lb) || fabs(loud_diff) > opt->max_loudness_diff)
        MISMATCH("integrated loudness differs by %.2f LU (at most %.2f allowed)", loud_diff,
                 opt->max_loudness_diff);
    if (b.plan[OWN].layout.nb_channels != channels)
        MISMATCH("A has %d channels, B %d", channels, b.plan[OWN].layout.nb_channels);
#undef MISMATCH
    *match = cJSON_GetArraySize(why) == 0;
    cJSON_AddBoolToObject(o, "Match", *match);
    *json = cJSON_Print(o);
    cJSON_Delete(o);
    if (!*json)
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
done:
    free(xa);
    free(xb);
    reader_close(&a);
    reader_close(&b);
    return e;
}
