/*
 * amrnb.c - AMR-NB encoding through libopencore-amrnb, for FFmpeg builds (Debian's among them)
 * that can decode AMR but carry no AMR encoder.
 *
 * The library takes 160 samples (20 ms) of 8 kHz mono 16-bit speech per call and returns one frame
 * in the storage format of RFC 4867 section 5 (a one-byte header, then the speech bits): exactly
 * what FFmpeg's AMR and MOV/3GP muxers store as a packet.
 */
#include "media.h"

#include <opencore-amrnb/interf_enc.h>
#include <string.h>

struct imm_amrnb {
    void *state;
    enum Mode mode;
};

/* The eight AMR-NB modes, in bit/s, indexed by enum Mode. */
static const int mode_rates[] = {4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200};

int imm_amrnb_mode_rate(int64_t bitrate)
{
    int best = mode_rates[0];
    for (size_t i = 0; i < sizeof(mode_rates) / sizeof(*mode_rates); i++)
        if (mode_rates[i] <= bitrate)
            best = mode_rates[i];
    return best;
}

imm_amrnb *imm_amrnb_new(int64_t bitrate)
{
    imm_amrnb *a = av_mallocz(sizeof(*a));
    if (!a)
        return NULL;
    int rate = imm_amrnb_mode_rate(bitrate);
    for (int m = 0; m < (int)(sizeof(mode_rates) / sizeof(*mode_rates)); m++)
        if (mode_rates[m] == rate)
            a->mode = (enum Mode)m;
    if (!(a->state = Encoder_Interface_init(0))) {
        av_free(a);
        return NULL;
    }
    return a;
}

int imm_amrnb_encode(imm_amrnb *a, const int16_t *pcm, AVPacket *pkt)
{
    unsigned char out[64];
    int n = Encoder_Interface_Encode(a->state, a->mode, pcm, out, 0);
    if (n <= 0)
        return AVERROR_EXTERNAL;
    int ret = av_new_packet(pkt, n);
    if (ret < 0)
        return ret;
    memcpy(pkt->data, out, (size_t)n);
    pkt->duration = IMM_AMRNB_FRAME;
    return 0;
}

void imm_amrnb_free(imm_amrnb *a)
{
    if (!a)
        return;
    Encoder_Interface_exit(a->state);
    av_free(a);
}
