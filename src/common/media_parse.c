/*
 * media_parse.c — the parts of a media request Sipp reads itself (see media_parse.h): format
 * sniffing with the declared image size, and media markers (data URLs: data_url.c, native
 * only, as it needs OpenSSL). Everything is bounds-checked against `len`; nothing here decodes
 * pixels. Also in the WebAssembly build.
 */
#define _GNU_SOURCE
#include "media_parse.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The JPEG frame header (SOFn) size: walks the marker segments up to the first SOFn. */
static int jpeg_size(const unsigned char *d, size_t len, uint32_t *w, uint32_t *h) {
    size_t i = 2;
    while (i + 4 <= len) {
        if (d[i] != 0xFF) return -1;
        unsigned m = d[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* no length */
            i += 2;
            continue;
        }
        if (m == 0xD9 || m == 0xDA) return -1; /* end or scan data before any frame header */
        uint32_t seg = be16(d + i + 2);
        if (seg < 2) return -1;
        bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof) {
            if (i + 9 > len || seg < 7) return -1;
            *h = be16(d + i + 5);
            *w = be16(d + i + 7);
            return 0;
        }
        i += 2 + (size_t)seg;
    }
    return -1;
}

/* Walks a RIFF/WAVE file's chunks (`fmt `, then `data`) into out's audio fields; 0, or -1 with
 * a reason in msg. A data chunk that declares more than the file holds (a stream that never
 * wrote its size) counts what is there. */
static int wav_parse(const unsigned char *d, size_t len, sipp__media_desc *out, char *msg, size_t cap) {
    size_t off = 12;
    bool have_fmt = false;
    uint32_t tag = 0, block = 0;
    while (off + 8 <= len) {
        const unsigned char *id = d + off;
        uint32_t size = le32(d + off + 4);
        size_t avail = len - off - 8;
        if (memcmp(id, "fmt ", 4) == 0) {
            if (size < 16 || avail < 16) {
                snprintf(msg, cap, "the audio/wav fmt chunk is truncated (%u bytes)", size);
                return -1;
            }
            const unsigned char *f = d + off + 8;
            tag = le16(f);
            out->channels = le16(f + 2);
            out->sample_rate = le32(f + 4);
            block = le16(f + 12);
            out->bits = le16(f + 14);
            if (tag == 0xFFFE && size >= 40 && avail >= 40) tag = le16(f + 24); /* EXTENSIBLE */
            have_fmt = true;
        } else if (memcmp(id, "data", 4) == 0) {
            if (!have_fmt) {
                snprintf(msg, cap, "the audio/wav data chunk comes before any fmt chunk");
                return -1;
            }
            bool pcm = tag == 1 && (out->bits == 8 || out->bits == 16 || out->bits == 24 || out->bits == 32);
            bool flt = tag == 3 && (out->bits == 32 || out->bits == 64);
            if (!pcm && !flt) {
                snprintf(msg, cap,
                         "unsupported WAV sample format (format tag 0x%04x, %u bits): use PCM "
                         "8/16/24/32-bit or IEEE float 32/64-bit",
                         tag, out->bits);
                return -1;
            }
            if (out->channels < 1 || out->channels > 16 || out->sample_rate < 1 ||
                out->sample_rate > 384000 || block != out->channels * (out->bits / 8)) {
                snprintf(msg, cap,
                         "the audio/wav fmt chunk is inconsistent (%u channels, %u Hz, block %u)",
                         out->channels, out->sample_rate, block);
                return -1;
            }
            out->frames = (size < avail ? size : avail) / block;
            if (out->frames == 0) {
                snprintf(msg, cap, "the audio/wav has no samples (zero-length audio)");
                return -1;
            }
            out->duration_ms = out->frames * 1000 / out->sample_rate;
            return 0;
        }
        if (size > avail) break;
        off += 8 + (size_t)size + (size & 1); /* chunks are padded to even sizes */
    }
    snprintf(msg, cap, "the audio/wav header is truncated or corrupt (no %s chunk)",
             have_fmt ? "data" : "fmt");
    return -1;
}

/* A FLAC's STREAMINFO (the first metadata block, 34 bytes) into out's audio fields. */
static int flac_parse(const unsigned char *d, size_t len, sipp__media_desc *out, char *msg, size_t cap) {
    if (len < 42 || (d[4] & 0x7F) != 0 || ((uint32_t)d[5] << 16 | be16(d + 6)) < 34) {
        snprintf(msg, cap, "the audio/flac header is truncated or corrupt (no STREAMINFO)");
        return -1;
    }
    const unsigned char *si = d + 8;
    out->sample_rate = (uint32_t)si[10] << 12 | (uint32_t)si[11] << 4 | si[12] >> 4;
    out->channels = ((si[12] >> 1) & 7u) + 1;
    out->bits = (((si[12] & 1u) << 4) | (si[13] >> 4)) + 1;
    out->frames = (uint64_t)(si[13] & 0xF) << 32 | be32(si + 14); /* 0: not told */
    if (out->sample_rate == 0) {
        snprintf(msg, cap, "the audio/flac STREAMINFO declares a sample rate of 0");
        return -1;
    }
    out->duration_ms = out->frames * 1000 / out->sample_rate;
    return 0;
}

/* An MP3's length: walks its MPEG audio frame headers (after an ID3v2 tag) and counts their
 * samples; stops at the first byte that is not a frame header (a trailing ID3v1 tag, junk).
 * out->frames, sample_rate and duration_ms stay 0 when no frame is found (told by decoding). */
static void mp3_length(const unsigned char *d, size_t len, sipp__media_desc *out) {
    static const uint16_t kbps[2][16] = { /* Layer III: MPEG-1; MPEG-2 and 2.5 */
        {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0},
        {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}};
    static const uint32_t rates[3] = {44100, 48000, 32000};
    size_t off = 0;
    if (len >= 10 && memcmp(d, "ID3", 3) == 0) /* ID3v2: a 10-byte header, a syncsafe size */
        off = 10 + ((size_t)(d[6] & 0x7F) << 21 | (size_t)(d[7] & 0x7F) << 14 |
                    (size_t)(d[8] & 0x7F) << 7 | (d[9] & 0x7F)) + ((d[5] & 0x10) ? 10 : 0);
    uint64_t samples = 0;
    uint32_t rate = 0;
    while (off + 4 <= len && d[off] == 0xFF && (d[off + 1] & 0xE0) == 0xE0) {
        unsigned ver = (d[off + 1] >> 3) & 3, layer = (d[off + 1] >> 1) & 3;
        unsigned bi = d[off + 2] >> 4, ri = (d[off + 2] >> 2) & 3, pad = (d[off + 2] >> 1) & 1;
        if (ver == 1 || layer != 1 || bi == 0 || bi == 15 || ri == 3) break; /* not Layer III */
        bool v1 = ver == 3;
        uint32_t r = rates[ri] >> (v1 ? 0 : ver == 2 ? 1 : 2);
        size_t flen = (size_t)(v1 ? 144 : 72) * kbps[v1 ? 0 : 1][bi] * 1000 / r + pad;
        if (rate && r != rate) break;
        rate = r;
        samples += v1 ? 1152 : 576;
        off += flen;
    }
    if (samples == 0) return;
    out->sample_rate = rate;
    out->frames = samples;
    out->duration_ms = samples * 1000 / rate;
}

/* The declared type, lower-cased without parameters, into buf; aliases made canonical. */
static const char *canonical_mime(const char *mime, char *buf, size_t cap) {
    size_t n = 0;
    while (mime[n] && mime[n] != ';' && n + 1 < cap) {
        buf[n] = (char)tolower((unsigned char)mime[n]);
        n++;
    }
    while (n > 0 && buf[n - 1] == ' ') n--;
    buf[n] = '\0';
    static const char *const alias[][2] = {
        {"image/jpg", "image/jpeg"},   {"image/pjpeg", "image/jpeg"}, {"image/x-ms-bmp", "image/bmp"},
        {"audio/x-wav", "audio/wav"},  {"audio/wave", "audio/wav"},   {"audio/vnd.wave", "audio/wav"},
        {"audio/mp3", "audio/mpeg"},   {"audio/x-flac", "audio/flac"},
    };
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcmp(buf, alias[i][0]) == 0) return alias[i][1];
    return buf;
}

sipp_status sipp__media_sniff(const void *data, size_t len, sipp_media_kind kind, const char *mime,
                              uint64_t max_pixels, sipp__media_desc *out, char *msg, size_t cap) {
    const unsigned char *d = data;
    memset(out, 0, sizeof *out);
    if (kind != SIPP_MEDIA_IMAGE && kind != SIPP_MEDIA_AUDIO) {
        snprintf(msg, cap, "unknown media kind %d (image or audio)", (int)kind);
        return SIPP_INVALID_ARGUMENT;
    }
    if (!d || len == 0) {
        snprintf(msg, cap, "the %s is empty (0 bytes)", kind == SIPP_MEDIA_IMAGE ? "image" : "audio");
        return SIPP_INVALID_ARGUMENT;
    }
    int bad = 0; /* 1: a known image format whose header is cut or broken */
    if (len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
        out->kind = SIPP_MEDIA_IMAGE, out->mime = "image/png";
        if (len >= 24 && memcmp(d + 12, "IHDR", 4) == 0)
            out->width = be32(d + 16), out->height = be32(d + 20);
        else
            bad = 1;
    } else if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
        out->kind = SIPP_MEDIA_IMAGE, out->mime = "image/jpeg";
        bad = jpeg_size(d, len, &out->width, &out->height) != 0;
    } else if (len >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) {
        out->kind = SIPP_MEDIA_IMAGE, out->mime = "image/gif";
        if (len >= 10) out->width = le16(d + 6), out->height = le16(d + 8);
        else bad = 1;
    } else if (len >= 2 && d[0] == 'B' && d[1] == 'M') {
        out->kind = SIPP_MEDIA_IMAGE, out->mime = "image/bmp";
        if (len >= 26) {
            int32_t w = (int32_t)le32(d + 18), h = (int32_t)le32(d + 22);
            out->width = w < 0 ? 0u - (uint32_t)w : (uint32_t)w;
            out->height = h < 0 ? 0u - (uint32_t)h : (uint32_t)h;
        } else {
            bad = 1;
        }
    } else if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WAVE", 4) == 0) {
        out->kind = SIPP_MEDIA_AUDIO, out->mime = "audio/wav";
    } else if (len >= 4 && memcmp(d, "fLaC", 4) == 0) {
        out->kind = SIPP_MEDIA_AUDIO, out->mime = "audio/flac";
    } else if ((len >= 3 && memcmp(d, "ID3", 3) == 0) ||
               (len >= 2 && d[0] == 0xFF && (d[1] & 0xE0) == 0xE0)) {
        out->kind = SIPP_MEDIA_AUDIO, out->mime = "audio/mpeg";
    }
    const char *want = kind == SIPP_MEDIA_IMAGE ? "an image (PNG, JPEG, GIF or BMP)"
                                                : "audio (WAV, MP3 or FLAC)";
    if (!out->mime) {
        snprintf(msg, cap, "the bytes are not %s%s%s", want, mime ? " although typed " : "",
                 mime ? mime : "");
        return SIPP_INVALID_ARGUMENT;
    }
    if (out->kind != kind) {
        snprintf(msg, cap, "the bytes are %s, not %s", out->mime, want);
        return SIPP_INVALID_ARGUMENT;
    }
    if (mime && mime[0]) {
        char buf[64];
        const char *m = canonical_mime(mime, buf, sizeof buf);
        if (strcmp(m, out->mime) != 0) {
            snprintf(msg, cap, "declared type '%.48s' but the bytes are %s", mime, out->mime);
            return SIPP_INVALID_ARGUMENT;
        }
    }
    if (bad) {
        snprintf(msg, cap, "the %s header is truncated or corrupt", out->mime);
        return SIPP_INVALID_ARGUMENT;
    }
    if (kind == SIPP_MEDIA_AUDIO) {
        if (len < 12) {
            snprintf(msg, cap, "the %s is too short to be audio (%zu bytes)", out->mime, len);
            return SIPP_INVALID_ARGUMENT;
        }
        if (strcmp(out->mime, "audio/wav") == 0 && wav_parse(d, len, out, msg, cap) != 0)
            return SIPP_INVALID_ARGUMENT;
        if (strcmp(out->mime, "audio/flac") == 0 && flac_parse(d, len, out, msg, cap) != 0)
            return SIPP_INVALID_ARGUMENT;
        if (strcmp(out->mime, "audio/mpeg") == 0) mp3_length(d, len, out);
    }
    if (kind == SIPP_MEDIA_IMAGE) {
        if (out->width == 0 || out->height == 0) {
            snprintf(msg, cap, "the %s declares a %ux%u image", out->mime, out->width, out->height);
            return SIPP_INVALID_ARGUMENT;
        }
        uint64_t px = (uint64_t)out->width * out->height;
        if (px > max_pixels) {
            snprintf(msg, cap,
                     "the %s declares %ux%u = %llu pixels, over the limit of %llu pixels per image "
                     "(max_image_pixels)",
                     out->mime, out->width, out->height, (unsigned long long)px,
                     (unsigned long long)max_pixels);
            return SIPP_INVALID_ARGUMENT;
        }
    }
    return SIPP_OK;
}

size_t sipp__media_count_markers(const char *text) {
    size_t n = 0, m = strlen(SIPP_MEDIA_MARKER);
    for (const char *p = text; (p = strstr(p, SIPP_MEDIA_MARKER)) != NULL; p += m) n++;
    return n;
}

sipp_status sipp__media_place_markers(const char *text, size_t n_parts, const char *what,
                                      char **out, sipp_error *err) {
    *out = NULL;
    size_t have = sipp__media_count_markers(text);
    if (have != 0 && have != n_parts)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "%s has %zu media marker(s) but %zu media part(s): put one %s per part, "
                          "or none to have them added in front",
                          what, have, n_parts, SIPP_MEDIA_MARKER);
    size_t m = strlen(SIPP_MEDIA_MARKER), tl = strlen(text);
    size_t extra = have == 0 ? n_parts : 0;
    if (extra > (SIZE_MAX - tl - 1) / m)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s: too many media parts", what);
    char *s = malloc(extra * m + tl + 1);
    if (!s) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (size_t i = 0; i < extra; i++) memcpy(s + i * m, SIPP_MEDIA_MARKER, m);
    memcpy(s + extra * m, text, tl + 1);
    *out = s;
    return SIPP_OK;
}
