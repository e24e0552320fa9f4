/*
 * splice.c - where two encoders' packet streams meet, in the sink that joins a target's chunks
 * (sink.c, imm_sink_join; the chunks themselves are chunk.c's).
 *
 * AAC packets stand alone: a chunk's follow the chunk before it as they are. MP3 needs one more
 * step. LAME lets a frame's data begin up to 511 bytes back, in the space the frames before it
 * left unused (the bit reservoir), and a fresh encoder's frames point into its own pre-roll,
 * which the joined stream does not have. Turning the reservoir off would cost
 * ~2 dB at 64 kbit/s. Instead the seam goes at the first frame j (from the nominal seam on) where
 * the next chunk's frame reaches back no further than the earlier chunk's own frame j did: the
 * bytes the earlier chunk's frame j used are then free, and the next chunk's reservoir bytes are
 * copied into them. Each frame then decodes exactly as its own encoder meant.
 */
#include "engine/sink/sink.h"

#include <string.h>

int imm_splice_is_lame(const imm_target_plan *plan)
{
    return plan->encoder && !strcmp(plan->encoder->name, "libmp3lame");
}

/* Where a Layer III frame's main data region begins (after header, CRC and side info), and the
 * frame's main_data_begin; -1 when pkt is not one frame. */
static int mp3_frame(const AVPacket *pkt, int *data_start)
{
    const uint8_t *p = pkt->data;
    if (pkt->size < 4 || p[0] != 0xff || (p[1] & 0xe0) != 0xe0 || ((p[1] >> 1) & 3) != 1)
        return -1;
    int mpeg1 = ((p[1] >> 3) & 3) == 3, mono = (p[3] >> 6) == 3, crc = !(p[1] & 1);
    int side = mpeg1 ? (mono ? 17 : 32) : (mono ? 9 : 17);
    *data_start = 4 + (crc ? 2 : 0) + side;
    if (pkt->size < *data_start)
        return -1;
    const uint8_t *si = p + 4 + (crc ? 2 : 0);
    return mpeg1 ? (si[0] << 1) | (si[1] >> 7) : si[0];
}

static int find_start(AVPacket **pkts, int n, int delay, int64_t start)
{
    for (int i = 0; i < n; i++)
        if (pkts[i]->pts + delay == start)
            return i;
    return -1;
}

/* Copies the `bytes` of b's main data stream before frame ib over the same place before a's frame
 * ia: the last bytes of the data regions of the frames before each. */
static imm_err mp3_patch(AVPacket **a, int ia, AVPacket **b, int ib, int bytes, imm_error *err)
{
    int ka = ia, kb = ib, pa = 0, pb = 0, sa = 0, sb = 0;
    for (; bytes > 0; bytes--) {
        while (pa == sa) {
            if (--ka < 0 || mp3_frame(a[ka], &sa) < 0 || av_packet_make_writable(a[ka]) < 0)
                return imm_error_set(err, IMM_EINTERNAL, "Cannot splice the MP3 chunks.");
            pa = a[ka]->size;
        }
        while (pb == sb) {
            if (--kb < 0 || mp3_frame(b[kb], &sb) < 0)
                return imm_error_set(err, IMM_EINTERNAL, "Cannot splice the MP3 chunks.");
            pb = b[kb]->size;
        }
        a[ka]->data[--pa] = b[kb]->data[--pb];
    }
    return IMM_OK;
}

imm_err imm_splice(const imm_target_plan *plan, int frame_size, int delay, AVPacket **a,
                         int na, AVPacket **b, int nb, int64_t seam, int64_t reach, int64_t *at,
                         imm_error *err)
{
    *at = seam;
    if (!imm_splice_is_lame(plan))
        return IMM_OK; /* AAC packets stand alone */
    for (int64_t j = seam; j < seam + reach; j += frame_size) {
        int ia = find_start(a, na, delay, j), ib = find_start(b, nb, delay, j), sa, sb;
        if (ia < 0 || ib < 0)
            break;
        int room = mp3_frame(a[ia], &sa), need = mp3_frame(b[ib], &sb);
        if (room < 0 || need < 0)
            break;
        if (need <= room) {
            *at = j;
            return mp3_patch(a, ia, b, ib, need, err);
        }
    }
    return imm_error_set(err, IMM_EINTERNAL, "Cannot join the MP3 chunks of %s: no frame within "
                         "%lld samples of sample %lld where the bit reservoirs fit.", plan->uri,
                         (long long)reach, (long long)seam);
}
