/*
 * no-rdtscp.c - preloaded under valgrind on a CPU that does not report rdtscp (tests/valgrind/run.sh).
 *
 * libavcodec loads libjxl, which loads libhwy, whose initializer measures its timer's resolution
 * with rdtscp. A virtual CPU may run rdtscp and yet not report it; valgrind 3.19 then refuses the
 * instruction and the program dies of SIGILL before main. The measurement serves only Highway's
 * own benchmarks, so a constant in its place changes nothing immerge runs. The initializer calls
 * it through the PLT, which a preloaded definition takes over.
 */
#include <stdint.h>

uint64_t _ZN3hwy8platform15TimerResolutionEv(void); /* hwy::platform::TimerResolution() */

uint64_t _ZN3hwy8platform15TimerResolutionEv(void)
{
    return 1;
}
