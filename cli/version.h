/* version.h - `immerge --version`. */
#ifndef IMMERGE_CLI_VERSION_H
#define IMMERGE_CLI_VERSION_H

#include <stdio.h>

/* immerge's version, then the version of every library it runs on, as loaded (not as built). */
void imm_print_version(FILE *out);

#endif
