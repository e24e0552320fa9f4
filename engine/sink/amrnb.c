/*
 * amrnb.c - AMR-NB encoding through libopencore-amrnb, for FFmpeg builds (Debian's among them)
 * that can decode AMR but carry no AMR encoder.
 *
 * The library takes 160 samples (20 ms) of 8 kHz mono 16-bit speech per call and returns one frame
 * in the storage format of RFC 4867 section 5 (a one-byte header, then the speech bits): exactly
 * what FFmpeg's AMR and MOV/3GP muxers store as a packet.
 */
#include "engine/sink/sink.h"

#include <opencore-amrnb/interf_enc.h>
#include <string.h>

struct imm_amrnb {
    void *state;
    enum Mode mode;
};

imm_amrnb *imm_amrnb_new(int64_t bitrate)
{
    imm_amrnb *a = av_mallocz(sizeof(*a));
    if (!a)
        return NULL;
    a->mode = (enum Mode)imm_amrnb_mode(bitrate);
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
