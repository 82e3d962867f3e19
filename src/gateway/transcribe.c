/*
 * transcribe.c — the OpenAI profile's POST /v1/audio/transcriptions (issue 17): the decode phase
 * of a multipart/form-data body and the answer's two formats. The run itself is sipp_listen()
 * on the target's endpoint, submitted and waited on like any text run (execute.c).
 *
 * The form is read with libmicrohttpd's post processor (src/http's sipp__httpd_form_parse) over
 * the body the HTTP layer accumulated within max_request_bytes. Fields: `file` (the audio:
 * WAV, MP3 or FLAC bytes), `model`, optional `prompt`, `language`, `response_format` (json |
 * text; verbose_json, srt, vtt refused by name) and `temperature`, as OpenAI, llama-server and
 * vLLM take them. Other fields are ignored, as OpenAI's SDK sends a few more (e.g.
 * timestamp_granularities[] only with verbose_json). The audio is checked and held to
 * max_media_bytes / max_audio_seconds by sipp__gw_call_add_audio, like an input_audio part.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text fields are short; this caps what one may hold (a prompt included). */
#define FIELD_MAX (64 * 1024)

enum { F_FILE, F_MODEL, F_PROMPT, F_LANGUAGE, F_FORMAT, F_TEMPERATURE, F_N };
static const char *const field_names[F_N] = {"file",     "model",           "prompt",
                                             "language", "response_format", "temperature"};

typedef struct form {
    char *val[F_N];
    size_t len[F_N], cap[F_N];
    bool seen[F_N];
    uint64_t max_file; /* max_media_bytes: a larger file stops the read (413) */
    bool file_too_large, field_too_long, twice;
    int which_long;
} form;

static bool on_field(void *cls, const char *key, const char *filename, const char *type,
                     uint64_t off, const char *data, size_t size) {
    (void)filename;
    (void)type;
    form *f = cls;
    int k = 0;
    while (k < F_N && strcmp(key, field_names[k]) != 0) k++;
    if (k == F_N) return true; /* a field we do not take */
    if (off == 0 && f->len[k] > 0) { /* a second part of the same name */
        f->twice = true;
        f->which_long = k;
        return false;
    }
    f->seen[k] = true;
    uint64_t max = k == F_FILE ? f->max_file : FIELD_MAX;
    if (size > max - f->len[k] || f->len[k] > max) {
        if (k == F_FILE) f->file_too_large = true;
        else f->field_too_long = true;
        f->which_long = k;
        return false;
    }
    if (f->len[k] + size + 1 > f->cap[k]) {
        size_t cap = f->cap[k] ? f->cap[k] : 256;
        while (cap < f->len[k] + size + 1) cap *= 2;
        char *b = realloc(f->val[k], cap);
        if (!b) return false;
        f->val[k] = b;
        f->cap[k] = cap;
    }
    memcpy(f->val[k] + f->len[k], data, size);
    f->len[k] += size;
    f->val[k][f->len[k]] = '\0';
    return true;
}

static void form_free(form *f) {
    for (int k = 0; k < F_N; k++) free(f->val[k]);
}

/* Moves field k's text to the call (owned there); "" when absent. NULL on out of memory. */
static const char *take(gw_call *c, form *f, int k) {
    char *s = f->val[k] ? f->val[k] : strdup("");
    f->val[k] = NULL;
    return s && sipp__gw_call_own(c, s) ? s : NULL;
}

bool sipp__gw_transcribe_decode(gw_req *r) {
    gw_call *c = &r->call;
    c->op = GW_OP_TRANSCRIBE;
    c->max_media_bytes = r->gw->cfg.max_media_bytes;
    c->max_audio_seconds = r->gw->cfg.max_audio_seconds;
    form f = {.max_file = c->max_media_bytes ? c->max_media_bytes : SIPP__GW_MAX_MEDIA_BYTES};
    int rc = sipp__httpd_form_parse(r->http, on_field, &f);
    bool ok = false;
    char msg[256];
    if (rc < 0) {
        sipp__gw_req_fail(r, GW_UNSUPPORTED_MEDIA_TYPE, NULL,
                          "the body must be sent with 'Content-Type: multipart/form-data' (a "
                          "boundary)");
    } else if (f.file_too_large) {
        sipp__gw_req_fail(r, GW_PAYLOAD_TOO_LARGE, "file",
                          "the file is larger than %llu bytes (max_media_bytes)",
                          (unsigned long long)f.max_file);
    } else if (f.field_too_long) {
        sipp__gw_req_fail(r, GW_INVALID_REQUEST, field_names[f.which_long],
                          "the field '%s' is longer than %d bytes", field_names[f.which_long],
                          FIELD_MAX);
    } else if (f.twice) {
        sipp__gw_req_fail(r, GW_INVALID_REQUEST, field_names[f.which_long],
                          "the field '%s' is given twice", field_names[f.which_long]);
    } else if (rc == 0) {
        sipp__gw_req_fail(r, GW_INVALID_REQUEST, NULL,
                          "the multipart/form-data body is malformed (a part or the closing "
                          "boundary is missing)");
    } else if (!f.seen[F_MODEL] || f.len[F_MODEL] == 0) {
        sipp__gw_req_fail(r, GW_INVALID_REQUEST, "model", "missing field 'model'");
    } else if (!f.seen[F_FILE]) {
        sipp__gw_req_fail(r, GW_INVALID_REQUEST, "file", "missing field 'file' (the audio)");
    } else if (!(c->model = take(c, &f, F_MODEL)) || !(c->prompt = take(c, &f, F_PROMPT)) ||
               !(c->language = take(c, &f, F_LANGUAGE))) {
        sipp__gw_req_fail(r, GW_EXECUTION, NULL, "out of memory");
    } else {
        ok = true;
        /* Refusals of the values wait for validate (after authorize and resolve), as a JSON
         * body's do: they reveal nothing to a caller who may not use the target. */
        const char *fmt = f.val[F_FORMAT] ? f.val[F_FORMAT] : "json";
        if (strcmp(fmt, "text") == 0)
            c->transcript_text = true;
        else if (strcmp(fmt, "json") != 0)
            sipp__gw_invalid(c, "response_format",
                             "response_format '%.32s' is not supported (json or text)", fmt);
        if (f.val[F_TEMPERATURE] && f.len[F_TEMPERATURE]) {
            char *end;
            double t = strtod(f.val[F_TEMPERATURE], &end);
            if (*end || !isfinite(t) || t < 0)
                sipp__gw_invalid(c, "temperature", "'temperature' must be a number >= 0");
            c->has_temperature = true;
            c->temperature = t;
        }
        if (!c->language[0]) c->language = NULL;
        if (!c->prompt[0]) c->prompt = NULL;
        /* The part's own Content-Type is not held against the bytes: clients send audio/x-wav,
         * audio/wave, audio/mp3 or application/octet-stream for the same files; the sniff of
         * the bytes decides (WAV, MP3 or FLAC), as for a file given to `sipp listen`. */
        if (!sipp__gw_call_add_audio(c, 0, "file", NULL, f.val[F_FILE] ? f.val[F_FILE] : "",
                                     SIZE_MAX, f.len[F_FILE], msg, sizeof msg))
            sipp__gw_invalid(c, "file", "%s", msg);
        else if (c->media_too_large)
            ok = sipp__gw_req_fail(r, GW_PAYLOAD_TOO_LARGE, "file",
                                   "the file is larger than %llu bytes (max_media_bytes)",
                                   (unsigned long long)f.max_file);
    }
    form_free(&f);
    return ok;
}

void sipp__gw_transcribe_answer(gw_req *r, const char *text, size_t len) {
    if (!r->call.transcript_text) {
        json_t *body = json_object();
        json_t *t = json_stringn(text, len);
        if (!body || !t || json_object_set_new(body, "text", t) != 0) {
            json_decref(body);
            sipp__gw_req_fail(r, GW_EXECUTION, NULL,
                              "the answer could not be encoded (invalid UTF-8?)");
            return;
        }
        sipp__gw_req_respond(r, 200, body);
        return;
    }
    sipp__httpd_header h[10];
    char retry[16];
    size_t n = sipp__gw_req_headers(r, h, "text/plain; charset=utf-8", retry);
    r->status = 200;
    sipp__httpd_respond(r->http, 200, h, n, text, len);
}
