/*
 * fuzz_media.c — libFuzzer target for what Sipp parses of a media part itself
 * (src/common/media_parse.c, data_url.c): the first byte picks the declared kind and type, the
 * rest is sniffed as media bytes, parsed as a data: URL (whose decoded bytes are sniffed in
 * turn) and given markers. Properties: no crash, no leak; a sniffed image has a non-zero size
 * within the pixel limit; a sniffed WAV (its chunks walked) has at least one frame, a supported
 * sample format and no more frames than its bytes hold; any audio part is at least 12 bytes; a
 * decoded data URL is no longer than the limit and than its text. Seeds that start with a WAV
 * header: tests/fuzz/corpus/fuzz_media.
 */
#include "common/media_parse.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static const char *const mimes[] = {NULL, "image/png", "image/jpg", "image/gif", "image/bmp",
                                    "audio/wav", "audio/mpeg", "IMAGE/PNG; q=1", "text/plain",
                                    "audio/flac", "audio/x-wav"};

static void sniff(const unsigned char *d, size_t n, unsigned sel) {
    sipp__media_desc desc;
    char msg[256];
    sipp_media_kind kind = sel & 1 ? SIPP_MEDIA_AUDIO : SIPP_MEDIA_IMAGE;
    const char *mime = mimes[(sel >> 1) % (sizeof mimes / sizeof mimes[0])];
    uint64_t max_px = sel & 0x80 ? 64 : SIPP__MEDIA_MAX_PIXELS;
    if (sipp__media_sniff(d, n, kind, mime, max_px, &desc, msg, sizeof msg) == SIPP_OK &&
        kind == SIPP_MEDIA_IMAGE) {
        assert(desc.width > 0 && desc.height > 0);
        assert((uint64_t)desc.width * desc.height <= max_px);
    }
    if (sipp__media_sniff(d, n, SIPP_MEDIA_AUDIO, NULL, max_px, &desc, msg, sizeof msg) == SIPP_OK) {
        assert(n >= 12);
        if (strcmp(desc.mime, "audio/wav") == 0) {
            assert(desc.frames > 0 && desc.sample_rate > 0 && desc.channels > 0);
            assert(desc.bits == 8 || desc.bits == 16 || desc.bits == 24 || desc.bits == 32 ||
                   desc.bits == 64);
            assert(desc.frames * desc.channels * (desc.bits / 8) <= n);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    if (len == 0) return 0;
    unsigned sel = data[0];
    const unsigned char *body = data + 1;
    size_t n = len - 1;
    sniff(body, n, sel);

    char *mime = NULL;
    unsigned char *bytes = NULL;
    size_t got = 0;
    char msg[256];
    size_t limit = sel & 0x40 ? 16 : 1 << 20;
    if (sipp__data_url_parse((const char *)body, n, limit, &mime, &bytes, &got, msg, sizeof msg) == 0) {
        assert(got <= limit && got <= n);
        sniff(bytes, got, sel);
    }
    free(mime);
    free(bytes);

    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, body, n);
    text[n] = '\0';
    char *out = NULL;
    sipp_error err = {.struct_size = sizeof err};
    size_t parts = sel % 4;
    if (sipp__media_place_markers(text, parts, "the prompt", &out, &err) == SIPP_OK)
        assert(sipp__media_count_markers(out) == parts);
    free(out);
    free(text);
    return 0;
}
