/*
 * report.h - the answers that are not a merge: `immerge plan`'s preview here, `immerge compare`
 * behind immerge.h.
 *
 *   preview.c     `immerge plan`'s answer, from the probes and plans alone
 *   compare.c     `immerge compare`: two files' lengths, levels, loudness, offset and SNR
 */
#ifndef IMMERGE_ENGINE_REPORT_REPORT_H
#define IMMERGE_ENGINE_REPORT_REPORT_H

#include "engine/convert/convert.h"

/* ---- preview.c ---- */
typedef struct imm_preview_source {
    const imm_source_info *info; /* the probe's; NULL where DisableAudio */
    imm_timeline whole;          /* what it decodes to before clipping; empty: unknown */
    const char *samples_from;    /* how that was found */
    int exact;                   /* counted, not estimated */
} imm_preview_source;

/* `immerge plan`'s JSON (free()): the probed sources, each target's plan and chunk count, and
 * the predicted lengths. NULL when out of memory. */
char *imm_preview_json(const imm_request *req, const imm_preview_source *sources,
                       const imm_target_plan *const *plans, const int *chunks,
                       double input_seconds);

#endif
