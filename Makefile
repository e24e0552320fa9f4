# immerge - plain Makefile. `make` builds build/immerge; `make test` installs what is missing
# (Debian packages, and the npm packages of the storage tests' servers), builds, and runs the unit
# tests (also under ASan+UBSan), valgrind, the end-to-end suites under ASan+UBSan and normally
# (merge, targets, service with a 200-task soak, seams, hostile input, plan/report/compare/progress,
# ImmergeExtensions, decoded lengths of every codec, serve attacked as a caller would (security),
# three servers sharing one PostgreSQL queue,
# and storage against servers on 127.0.0.1), and a 60 s libFuzzer run of each fuzz target (the
# request parser, the media path, serve's HTTP layer).

PKGS     := libavformat libavcodec libavfilter libswresample libavutil libcjson openssl libcurl opencore-amrnb sqlite3 libpq
BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SAN      ?=
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# -MMD -MP: each object's headers, as the compiler saw them, in a .d file beside it (included below).
CFLAGS   := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE $(OPT) $(SAN) -MMD -MP \
            -I. -Iinclude $(PKG_CFLAGS)
LDFLAGS  := $(SAN)
LDLIBS   := $(PKG_LIBS) -lm -lpthread

# One archive per layer, lowest first (docs/layout.md).
ENGINE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard engine/*/*.c))
NET_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard net/*.c))
OSS_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard oss/*.c))
NOTIFY_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard notify/*.c))
TASKS_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tasks/*.c))
SERVE_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard serve/*.c))
CLI_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard cli/*.c))
# Highest first, as the linker takes them.
LIBS       := $(BUILD)/libimmserve.a $(BUILD)/libimmtasks.a $(BUILD)/libimmnotify.a \
              $(BUILD)/libimmoss.a $(BUILD)/libimmnet.a $(BUILD)/libimmerge.a
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps layout example test unit asan asan-test e2e valgrind bench bench-cluster fuzz clean

all: $(BUILD)/immerge

$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

-include $(patsubst %.o,%.d,$(ENGINE_OBJ) $(NET_OBJ) $(OSS_OBJ) $(NOTIFY_OBJ) $(TASKS_OBJ) \
                            $(SERVE_OBJ) $(CLI_OBJ)) \
         $(patsubst %,%.d,$(UNIT_BIN))

# `immerge --version`: VERSION, and the commit it was built from when built from a clone.
VERSION_TEXT := $(shell cat VERSION)$(shell git rev-parse --short HEAD > /dev/null 2>&1 && \
	echo " (git $$(git rev-parse --short HEAD)$$(git diff --quiet HEAD -- 2>/dev/null || echo ', modified'))")
$(BUILD)/cli/version.o: CFLAGS += -DIMMERGE_VERSION='"$(VERSION_TEXT)"'
$(BUILD)/cli/version.o: VERSION $(wildcard .git/HEAD .git/index)

$(BUILD)/libimmerge.a: $(ENGINE_OBJ)
$(BUILD)/libimmnet.a: $(NET_OBJ)
$(BUILD)/libimmoss.a: $(OSS_OBJ)
$(BUILD)/libimmnotify.a: $(NOTIFY_OBJ)
$(BUILD)/libimmtasks.a: $(TASKS_OBJ)
$(BUILD)/libimmserve.a: $(SERVE_OBJ)
# From scratch: ar would keep the members of files that were moved or removed.
$(LIBS):
	rm -f $@ && ar rcs $@ $^

$(BUILD)/immerge: $(CLI_OBJ) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The .d file names the test's headers as prerequisites too: only sources and archives are linked.
$(BUILD)/tests/%: tests/unit/%.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.c %.a,$^) $(LDLIBS) -lcmocka

deps:
	@tests/deps.sh

# The include arrows against the layering, and docs/layout.md's tree against the files.
layout:
	@python3 tests/layout.py

# Runs the bundled examples (README's first command).
example: deps
	@$(MAKE) --no-print-directory all
	@testdata/run-example.sh

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do $$t || exit 1; done

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all

asan-test:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" unit all

e2e: all
	@tests/e2e/run.sh $(BUILD)/immerge
	@tests/e2e/targets.sh $(BUILD)/immerge
	@tests/e2e/storage.sh $(BUILD)/immerge
	@tests/e2e/service.sh $(BUILD)/immerge
	@tests/e2e/seams.sh $(BUILD)/immerge
	@tests/e2e/hostile.sh $(BUILD)/immerge
	@tests/e2e/report.sh $(BUILD)/immerge
	@tests/e2e/extensions.sh $(BUILD)/immerge
	@tests/e2e/lengths.sh $(BUILD)/immerge
	@tests/e2e/fidelity.sh $(BUILD)/immerge
	@tests/e2e/security.sh $(BUILD)/immerge
	@tests/e2e/cluster.sh $(BUILD)/immerge

# valgrind: the unit tests, both examples, testdata/features.json (Speed, Mixing, Quality, HLS
# segments, AMR in one task) and testdata/chunks.json (AAC and MP3 each encoded in two chunks on
# threads of their own, then joined), testdata/extensions.json (fades and loudness
# normalisation), `plan` of each, and `compare` of chunks.json's two outputs,
# failing on any memory error or leak. Its log is shown
# only on failure: valgrind 3.19 warns about every openat2 call it cannot follow (we fall back).
VALGRIND = tests/valgrind/run.sh --log-file=$(BUILD)/valgrind.log
VG_FAIL  = { grep -v -e '^--[0-9]*-- ' $(BUILD)/valgrind.log; exit 1; }
valgrind: all $(UNIT_BIN)
	@for t in $(UNIT_BIN); do $(VALGRIND) $$t > /dev/null 2>&1 || $(VG_FAIL); done
	@root=$$(mktemp -d) && testdata/gen-media.sh $$root --features && \
	  for r in testdata/example-*.json testdata/features.json testdata/chunks.json \
	           testdata/extensions.json; do \
	    $(VALGRIND) $(BUILD)/immerge run --quiet --chunks 2 --oss-root $$root $$r > /dev/null || \
	      $(VG_FAIL); \
	    $(VALGRIND) $(BUILD)/immerge plan --oss-root $$root $$r > /dev/null || $(VG_FAIL); \
	  done && \
	  { $(VALGRIND) $(BUILD)/immerge compare --oss-root $$root oss://test-bucket/output/chunks.mp3 \
	      oss://test-bucket/output/chunks.mp4 > /dev/null; [ $$? -lt 2 ]; } || $(VG_FAIL); \
	  rm -rf $$root && \
	  echo "valgrind: clean (unit tests, run and plan of both examples, features.json," \
	       "chunks.json and extensions.json, compare)"

test: deps layout
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory asan-test
	@$(MAKE) --no-print-directory valgrind
	@IMMERGE_E2E_QUICK=1 tests/e2e/run.sh build/asan/immerge
	@IMMERGE_E2E_QUICK=1 tests/e2e/storage.sh build/asan/immerge
	@tests/e2e/targets.sh build/asan/immerge
	@tests/e2e/service.sh build/asan/immerge
	@tests/e2e/seams.sh build/asan/immerge
	@tests/e2e/hostile.sh build/asan/immerge
	@tests/e2e/report.sh build/asan/immerge
	@tests/e2e/extensions.sh build/asan/immerge
	@tests/e2e/lengths.sh build/asan/immerge
	@tests/e2e/fidelity.sh build/asan/immerge
	@tests/e2e/security.sh build/asan/immerge
	@IMMERGE_E2E_QUICK=1 tests/e2e/cluster.sh build/asan/immerge
	@tests/e2e/run.sh build/immerge
	@tests/e2e/targets.sh build/immerge
	@tests/e2e/service.sh build/immerge
	@tests/e2e/seams.sh build/immerge
	@tests/e2e/hostile.sh build/immerge
	@tests/e2e/report.sh build/immerge
	@tests/e2e/extensions.sh build/immerge
	@tests/e2e/lengths.sh build/immerge
	@tests/e2e/fidelity.sh build/immerge
	@tests/e2e/security.sh build/immerge
	@tests/e2e/cluster.sh build/immerge
	@tests/e2e/storage.sh build/immerge
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=60

# libFuzzer (clang) with ASan+UBSan, FUZZ_SECONDS (default 60) per target: the request parser
# (corpus: testdata/'s requests, a dictionary of field names), the media path (corpus: small
# files of every input format from gen-media.sh) and serve's HTTP layer (corpus: tests/fuzz/
# http-seeds, a dictionary of HTTP's words). A crash leaves its input in build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_TARGETS := build/fuzz/fuzz_request build/fuzz/fuzz_media build/fuzz/fuzz_http
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang OPT="-O1 -g" \
		SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" build/fuzz/libimmerge.a
	@for t in request media; do \
	  clang $(CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o build/fuzz/fuzz_$$t \
	    tests/fuzz/fuzz_$$t.c build/fuzz/libimmerge.a $(LDLIBS) || exit 1; done
	@clang $(CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o build/fuzz/fuzz_http tests/fuzz/fuzz_http.c \
	  serve/httpd.c net/sign.c build/fuzz/libimmerge.a $(LDLIBS)
	@mkdir -p build/fuzz/corpus-request build/fuzz/corpus-media && \
	  cp testdata/*.json build/fuzz/corpus-request/ && \
	  { [ -f build/fuzz/seeds/.done ] || { testdata/gen-media.sh build/fuzz/seeds --formats && \
	    find build/fuzz/seeds -type f -size -200k -exec cp {} build/fuzz/corpus-media/ \; && \
	    touch build/fuzz/seeds/.done; }; }
	@cd build/fuzz && ./fuzz_request -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		-dict=../../tests/fuzz/json.dict corpus-request 2> request.log || \
		{ tail -40 request.log; exit 1; }
	@cd build/fuzz && ./fuzz_media -max_total_time=$(FUZZ_SECONDS) -max_len=262144 -timeout=20 \
		-rss_limit_mb=1024 corpus-media 2> media.log || { tail -40 media.log; exit 1; }
	@mkdir -p build/fuzz/corpus-http && cp tests/fuzz/http-seeds/* build/fuzz/corpus-http/
	@cd build/fuzz && ./fuzz_http -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=20 \
		-dict=../../tests/fuzz/http.dict corpus-http 2> http.log || { tail -40 http.log; exit 1; }
	@for t in request media http; do echo "fuzz_$$t: $$(grep -E '^#[0-9]+' build/fuzz/$$t.log | tail -1)"; done

# Speed against the ffmpeg CLI doing the same merges (minutes; not part of make test).
bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/bench.sh $(BUILD)/immerge

# Three servers on one PostgreSQL queue (tests/e2e/cluster.sh): its measurements only (tasks per
# second through the API, Create to Running, recovery after kill -9, RSS).
bench-cluster: deps
	@$(MAKE) --no-print-directory all
	@tests/e2e/cluster.sh $(BUILD)/immerge | grep '^# cluster'

clean:
	rm -rf build
