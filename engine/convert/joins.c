/*
 * joins.c - how each join between two sources sounds, as a number: a click is a sudden step
 * between the last sample of one source and the first of the next, so the meter keeps each
 * source's first and last JOIN_WINDOW samples (the mean of its channels, as decoded and clipped)
 * and compares the step across the join with the signal around it.
 *
 * It measures the merged timeline before conversion, once per task rather than once per target;
 * each target's resampling smooths a step a little but cannot remove it.
 */
#include "engine/convert/convert.h"

#include <math.h>
#include <string.h>

/* Mean of the channels of sample i of f, full scale 1.0. */
static float mono_at(const AVFrame *f, int i)
{
    int channels = f->ch_layout.nb_channels;
    double sum = 0;
    for (int c = 0; c < channels; c++)
        sum += imm_sample_value(f, c, i);
    return channels ? (float)(sum / channels) : 0.0f;
}

void imm_join_meter_start(imm_join_meter *m)
{
    memcpy(m->prev, m->tail, sizeof(m->tail));
    m->nprev = m->ntail;
    m->nhead = m->ntail = 0;
    m->sources++;
}

void imm_join_meter_add(imm_join_meter *m, const AVFrame *f, int offset, int count)
{
    for (int i = 0; i < count && m->nhead < IMM_JOIN_WINDOW; i++)
        m->head[m->nhead++] = mono_at(f, offset + i);
    /* The tail is kept in order: shift out what this frame's last samples replace. */
    int take = count < IMM_JOIN_WINDOW ? count : IMM_JOIN_WINDOW;
    int keep = m->ntail + take > IMM_JOIN_WINDOW ? IMM_JOIN_WINDOW - take : m->ntail;
    memmove(m->tail, m->tail + (m->ntail - keep), (size_t)keep * sizeof(*m->tail));
    for (int i = 0; i < take; i++)
        m->tail[keep + i] = mono_at(f, offset + count - take + i);
    m->ntail = keep + take;
}

/* Root mean square of the steps between neighbours in x[0..n). */
static double step_rms(const float *x, int n)
{
    double sum = 0;
    for (int i = 1; i < n; i++)
        sum += (double)(x[i] - x[i - 1]) * (x[i] - x[i - 1]);
    return n > 1 ? sqrt(sum / (n - 1)) : 0;
}

int imm_join_meter_measure(const imm_join_meter *m, imm_join_measure *out)
{
    if (m->sources < 2 || !m->nprev || !m->nhead)
        return 0;
    double sum = 0;
    for (int i = 0; i < m->nprev; i++)
        sum += (double)m->prev[i] * m->prev[i];
    for (int i = 0; i < m->nhead; i++)
        sum += (double)m->head[i] * m->head[i];
    out->jump = fabs((double)m->head[0] - m->prev[m->nprev - 1]);
    out->rms = sqrt(sum / (m->nprev + m->nhead));
    /* The typical step on either side, weighted by how many steps each side has. */
    double a = step_rms(m->prev, m->nprev), b = step_rms(m->head, m->nhead);
    int na = m->nprev - 1, nb = m->nhead - 1;
    out->step = na + nb > 0 ? sqrt((a * a * na + b * b * nb) / (na + nb)) : 0;
    return 1;
}
