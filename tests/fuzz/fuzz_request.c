/*
 * fuzz_request.c - libFuzzer target: any bytes through the request parser and validator, and, for
 * a request it accepts, through the task's JSON (what GetTask prints) without running it.
 * The parser must never crash, leak or read out of bounds, whatever it is given.
 */
#include "immerge.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imm_request *req = NULL;
    imm_error err = {0};
    if (imm_request_parse((const char *)data, size, &req, &err) == IMM_OK) {
        imm_task *task = imm_task_new(req);
        free(imm_task_to_json(task));
        imm_task_free(task);
        imm_request_free(req);
    } else {
        free(imm_error_to_json(&err, NULL));
    }
    return 0;
}
