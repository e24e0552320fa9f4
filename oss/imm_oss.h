/*
 * imm_oss.h - storage implementations behind immerge.h's imm_storage interface.
 *
 * The local store is the embedded default: oss://bucket/key is the file ROOT/bucket/key, and
 * file:// URIs and plain paths are local files. A key can never resolve outside ROOT/bucket, not
 * even through a symbolic link inside the root.
 */
#ifndef IMM_OSS_H
#define IMM_OSS_H

#include "immerge.h"

/* root may be NULL: then only local paths work and oss:// URIs are refused with a clear error. */
imm_err imm_oss_local_new(const char *root, imm_storage **out, imm_error *err);

#endif
