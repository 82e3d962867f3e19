/*
 * media_parse.h — what Sipp itself parses of a media part (multimodal, docs/multimodal.md):
 * the container type and declared size told by the first bytes (the image decoders of
 * llama.cpp's mtmd run only on parts that pass), `data:` URLs, and media markers in text.
 *
 * Pure functions over caller memory: no I/O, no globals, no llama.cpp; the libFuzzer target
 * tests/fuzz/fuzz_media.c drives each of them.
 */
#ifndef SIPP_MEDIA_PARSE_H
#define SIPP_MEDIA_PARSE_H

#include "common_int.h"

/* Default limits (the gateway's [limits] override them). */
#define SIPP__MEDIA_MAX_PIXELS (4096u * 4096u) /* declared width x height of one image */

typedef struct sipp__media_desc {
    sipp_media_kind kind;
    const char *mime;        /* canonical type told by the bytes, e.g. "image/png" (static) */
    uint32_t width, height;  /* images: the header's declared size */
    /* audio: WAV and FLAC headers; an MP3's frame headers walked (0 = not told: a FLAC that
     * leaves its length out, an MP3 whose frames are not Layer III) */
    uint32_t sample_rate, channels, bits;
    uint64_t frames;      /* samples per channel */
    uint64_t duration_ms; /* frames / sample_rate */
} sipp__media_desc;

/* Tells the format of `data` from its header: PNG, JPEG, GIF, BMP (images), WAV, MP3, FLAC
 * (audio). For an image the declared size must be non-zero and at most `max_pixels` pixels
 * (a decompression bomb declares billions and is refused before anything is decoded). A WAV's
 * chunks are walked: its fmt must be PCM (8/16/24/32-bit) or IEEE float (32/64-bit), 1-16
 * channels, a sample rate of 1-384000 Hz and a consistent block size, its data chunk at least
 * one frame (zero-length audio is refused); a FLAC's STREAMINFO must be there. Audio parts are
 * at least 12 bytes (what llama.cpp's audio sniff needs, so no audio part ever reaches its
 * image or video fallbacks).
 * `mime` (may be NULL) is the caller's declared type: it must agree with the bytes ("image/jpg"
 * is read as image/jpeg). `kind` is the part's declared kind. SIPP_OK, or INVALID_ARGUMENT with
 * a one-line reason in msg ("media[i]: ..." is the caller's prefix). */
sipp_status sipp__media_sniff(const void *data, size_t len, sipp_media_kind kind, const char *mime,
                              uint64_t max_pixels, sipp__media_desc *out, char *msg, size_t cap);

/* Parses a `data:[<type>][;base64],<payload>` URL (RFC 2397; base64 only, as OpenAI sends
 * images). *data (malloc'd, freed by the caller) receives the decoded bytes, *mime the type
 * (malloc'd; "" when absent). Payloads over max_bytes decoded are refused before decoding.
 * Returns 0, or -1 with a reason in msg; -2 when only the size limit was exceeded. */
int sipp__data_url_parse(const char *url, size_t len, size_t max_bytes, char **mime,
                         unsigned char **data, size_t *n, char *msg, size_t cap);

/* The number of SIPP_MEDIA_MARKER occurrences in `text`. */
size_t sipp__media_count_markers(const char *text);

/* `text` with its media markers checked against `n_parts` parts: a text with none gets one
 * marker per part in front (joined by nothing, then the text); a text with exactly n_parts is
 * copied; any other count is INVALID_ARGUMENT. *out is malloc'd. `what` names the text in the
 * message ("the prompt", "messages[2]"). */
sipp_status sipp__media_place_markers(const char *text, size_t n_parts, const char *what,
                                      char **out, sipp_error *err);

#endif
