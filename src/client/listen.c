/*
 * listen.c — sipp_listen(): speech to text (issue 17) as an ordinary run. The clip becomes the
 * one audio part of a chat whose user turn is the transcription instruction (llama-server's
 * /v1/audio/transcriptions preset: "Transcribe audio to text", the language appended, the media
 * marker after the text); a model without a chat template gets the same text as a raw query.
 * The endpoint must take audio (sipp_endpoint_info.audio_in), else UNSUPPORTED naming listen.
 */
#define _GNU_SOURCE
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/media_parse.h"

sipp_status sipp_listen(sipp_endpoint *ep, const sipp_media *audio, const char *prompt,
                        const char *language, const sipp_text_params *params, sipp_run **out,
                        sipp_error *err) {
    if (out) *out = NULL;
    if (!ep || !out)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "listen: endpoint and out are required");
    if (!audio || audio->kind != SIPP_MEDIA_AUDIO)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "listen: the clip must be a SIPP_MEDIA_AUDIO part (WAV, MP3 or FLAC)");
    sipp_text_params p = sipp__text_params_defaults();
    p.temperature = 0; /* a transcript: greedy unless the caller says otherwise */
    if (params) {
        sipp_status st = sipp__params_in(&p, sizeof p, params, SIPP__FIRST_SIZE(text_params),
                                         "text params", err);
        if (st != SIPP_OK) return st;
        if (p.n_media)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "listen: the clip is the only media part; params.media must be empty");
    }
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    sipp_status st = sipp_endpoint_get_info(ep, &info, err);
    if (st != SIPP_OK) return st;
    if (!info.audio_in)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "listen: this endpoint ('%s') takes no audio: listen needs a local model "
                          "with an audio encoder as its projector (mmproj)",
                          info.architecture[0] ? info.architecture : "remote");
    if (language && strpbrk(language, "\r\n"))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "listen: language has a line break");
    const char *base = prompt && prompt[0] ? prompt : SIPP_LISTEN_PROMPT;
    bool has_marker = sipp__media_count_markers(base) > 0;
    char *text = NULL;
    if (asprintf(&text, "%s%s%s%s%s", base, language && language[0] ? " (language: " : "",
                 language && language[0] ? language : "", language && language[0] ? ")" : "",
                 has_marker ? "" : SIPP_MEDIA_MARKER) < 0)
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    sipp_media part = *audio;
    part.message_index = 0;
    p.media = &part;
    p.n_media = 1;
    if (info.can_chat) {
        sipp_message user = {"user", text};
        st = sipp_chat(ep, &user, 1, &p, out, err);
    } else {
        st = sipp_query(ep, text, &p, out, err);
    }
    free(text);
    return st;
}
