/*
 * media_parts.c — media parts of a chat on a remote endpoint (multimodal, docs/multimodal.md):
 * a message with parts becomes a content array, its text split at the media markers (or the
 * parts in front, as locally), each image an OpenAI `image_url` part with a data: URL or an
 * Anthropic `image` block with base64 source. What a provider cannot take is refused before
 * anything is sent: audio (no mapping yet), images in an Anthropic system prompt.
 */
#define _GNU_SOURCE
#include "providers_int.h"

#include "../common/media_parse.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The base64 of `len` bytes (malloc'd, NUL-terminated), through OpenSSL. */
static char *b64(const void *data, size_t len) {
    if (len > (size_t)INT32_MAX / 4 * 3) return NULL;
    char *out = malloc(len / 3 * 4 + 5);
    if (out) EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static json_t *image_part(const sipp_media *m, const char *mime, bool anthropic) {
    char *enc = b64(m->data, m->len);
    if (!enc) return NULL;
    json_t *part = NULL;
    if (anthropic) {
        part = json_pack("{s:s,s:{s:s,s:s,s:s}}", "type", "image", "source", "type", "base64",
                         "media_type", mime, "data", enc);
    } else {
        char *url = NULL;
        if (asprintf(&url, "data:%s;base64,%s", mime, enc) >= 0)
            part = json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url", url);
        free(url);
    }
    free(enc);
    return part;
}

/* The content array of message `i`: text segments between markers, and its parts in order. */
static sipp_status content_parts(const sipp_message *msg, size_t i, const sipp_text_params *p,
                                 size_t n_parts, bool anthropic, json_t **out, sipp_error *err) {
    char what[48];
    snprintf(what, sizeof what, "chat: messages[%zu]", i);
    char *text = NULL;
    sipp_status st = sipp__media_place_markers(msg->content, n_parts, what, &text, err);
    if (st != SIPP_OK) return st;
    json_t *arr = json_array();
    const char *s = text, *mk;
    size_t k = 0, ml = strlen(SIPP_MEDIA_MARKER);
    for (size_t m = 0; st == SIPP_OK && arr && m < p->n_media; m++) {
        if (p->media[m].message_index != i) continue;
        mk = strstr(s, SIPP_MEDIA_MARKER);
        if (mk > s) {
            json_t *t = json_pack("{s:s,s:s%}", "type", "text", "text", s, (size_t)(mk - s));
            if (!t) st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s is not valid UTF-8", what);
            else json_array_append_new(arr, t);
        }
        s = mk + ml;
        sipp__media_desc d;
        char why[200];
        if (st == SIPP_OK &&
            sipp__media_sniff(p->media[m].data, p->media[m].len, p->media[m].kind,
                              p->media[m].mime_type, SIPP__MEDIA_MAX_PIXELS, &d, why,
                              sizeof why) != SIPP_OK)
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: media[%zu]: %s", m, why);
        json_t *part = st == SIPP_OK ? image_part(&p->media[m], d.mime, anthropic) : NULL;
        if (st == SIPP_OK && !part) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        if (part) json_array_append_new(arr, part);
        k++;
    }
    if (st == SIPP_OK && arr && *s) {
        json_t *t = json_pack("{s:s,s:s}", "type", "text", "text", s);
        if (!t) st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s is not valid UTF-8", what);
        else json_array_append_new(arr, t);
    }
    free(text);
    if (!arr && st == SIPP_OK) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st != SIPP_OK) {
        json_decref(arr);
        return st;
    }
    *out = arr;
    return SIPP_OK;
}

sipp_status sipp__remote_add_media(json_t *msgs, const sipp_message *messages, size_t n,
                                   bool skip_system, const sipp_text_params *p, bool anthropic,
                                   const char *provider, sipp_error *err) {
    for (size_t m = 0; m < p->n_media; m++) {
        if (p->media[m].kind != SIPP_MEDIA_IMAGE)
            return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                              "chat: media[%zu] is audio, which is not sent to %s endpoints yet; "
                              "nothing was sent",
                              m, provider);
        if (p->media[m].message_index >= n)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: media[%zu] names message %zu of %zu",
                              m, p->media[m].message_index, n);
        if (skip_system && strcmp(messages[p->media[m].message_index].role, "system") == 0)
            return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                              "chat: media[%zu] belongs to a system message, which %s takes as "
                              "text only; nothing was sent",
                              m, provider);
    }
    for (size_t i = 0, j = 0; i < n; i++) {
        if (skip_system && strcmp(messages[i].role, "system") == 0) continue;
        size_t parts = 0;
        for (size_t m = 0; m < p->n_media; m++) parts += p->media[m].message_index == i;
        if (parts > 0) {
            json_t *content = NULL;
            sipp_status st = content_parts(&messages[i], i, p, parts, anthropic, &content, err);
            if (st != SIPP_OK) return st;
            json_object_set_new(json_array_get(msgs, j), "content", content);
        }
        j++;
    }
    return SIPP_OK;
}
