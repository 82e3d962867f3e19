/*
 * cmd_pull.c — `sipp pull`: download a model from a Hugging Face-style hub into the models
 * directory (src/hub does the work), with a progress bar on a terminal and plain progress lines
 * otherwise. Ctrl-C stops the download and keeps what arrived for the next pull to resume.
 * HF_TOKEN is handed to the hub client and never printed. Proxy environment variables are not
 * read (SIPP_HUB_PROXY names a proxy); private addresses need --allow-private-network.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "hub/hub_int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: sipp pull [options] OWNER/REPO[:QUANT]\n"
    "       sipp pull [options] OWNER/REPO/FILE.gguf\n"
    "\n"
    "Download a GGUF model from the hub into the models directory, verify its sha256 and make\n"
    "it usable by name: sipp chat --model OWNER/REPO[:QUANT] \"Hello\".\n"
    "\n"
    "  OWNER/REPO         the repo's default: the Q4_K_M file, else Q8_0, else its first model\n"
    "  OWNER/REPO:QUANT   the file of that quantization (Q4_K_M, Q8_0, IQ4_XS...; any case)\n"
    "  OWNER/REPO/FILE    that file of the repo\n"
    "A split model (NAME-00001-of-0000N.gguf) comes as a set; a vision model's projector\n"
    "(mmproj*.gguf) comes with it when the repo has one. An interrupted pull resumes where it\n"
    "stopped. Files already in the store (same sha256) are not downloaded again.\n"
    "\n"
    "options:\n"
    "  --no-mmproj     do not fetch the projector\n"
    "  --allow-private-network\n"
    "                  let the hub (and its redirects) be on a private or link-local address\n"
    "                  (a mirror on the LAN), plain http included; refused by default\n"
    "  -q, --quiet     no progress output\n"
    "  -h, --help      this help\n"
    "\n"
    "environment:\n"
    "  SIPP_MODELS_DIR   where models go (default ~/.cache/sipp/models; pulled ones under hub/)\n"
    "  SIPP_HUB_URL      the hub (default https://huggingface.co; HF_ENDPOINT is read too);\n"
    "                    https required except for loopback\n"
    "  SIPP_HUB_PROXY    a proxy for every hub request (http://HOST:PORT, socks5h://...);\n"
    "                    http_proxy, https_proxy and ALL_PROXY are ignored\n"
    "  HF_TOKEN          access token for gated or private repos (sent only to the hub)\n";

/* ---- progress -------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}
static bool should_abort(void *ud) {
    (void)ud;
    return interrupted != 0;
}

typedef struct progress {
    bool tty, quiet;
    double t0, last_print; /* this file's attempt start, last output (seconds) */
    uint64_t start_bytes;  /* bytes on disk when the attempt began */
    int last_decile;
} progress;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human(uint64_t b, char *out, size_t cap) {
    if (b >= (1ull << 30)) snprintf(out, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(out, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    else if (b >= 1024) snprintf(out, cap, "%.1f KiB", (double)b / 1024.0);
    else snprintf(out, cap, "%llu B", (unsigned long long)b);
}

static void eta_text(double s, char *out, size_t cap) {
    if (s < 0 || s > 99 * 3600) snprintf(out, cap, "--:--");
    else if (s >= 3600) snprintf(out, cap, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else snprintf(out, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void print_data(progress *pr, const sipp__hub_event *ev, bool final) {
    double t = now_s(), dt = t - pr->t0;
    double rate = dt > 0 ? (double)(ev->done - pr->start_bytes) / dt : 0;
    double eta = rate > 0 ? (double)(ev->total - ev->done) / rate : -1;
    char done[32], total[32], rt[32], et[16];
    human(ev->done, done, sizeof done);
    human(ev->total, total, sizeof total);
    human((uint64_t)rate, rt, sizeof rt);
    eta_text(eta, et, sizeof et);
    int pct = ev->total ? (int)(ev->done * 100 / ev->total) : 100;
    if (pr->tty) {
        int width = 24, filled = ev->total ? (int)(ev->done * (uint64_t)width / ev->total) : width;
        fprintf(stderr, "\r\033[K%s [%.*s%*s] %3d%% %s / %s  %s/s  ETA %s", base_name(ev->path),
                filled, "########################", width - filled, "", pct, done, total, rt, et);
    } else {
        fprintf(stderr, "pull: %s: %s of %s (%d%%), %s/s, ETA %s\n", base_name(ev->path), done,
                total, pct, rt, et);
    }
    (void)final;
    fflush(stderr);
    pr->last_print = t;
}

static void on_event(const sipp__hub_event *ev, void *ud) {
    progress *pr = ud;
    if (pr->quiet) return;
    char a[32], b[32];
    switch (ev->kind) {
    case SIPP__HUB_EV_RESOLVED:
        human(ev->total, a, sizeof a);
        fprintf(stderr, "pull: %s at commit %.12s: %zu file%s, %s\n", ev->path, ev->commit,
                ev->count, ev->count == 1 ? "" : "s", a);
        break;
    case SIPP__HUB_EV_HAVE:
        fprintf(stderr, "pull: [%zu/%zu] %s: already in the store\n", ev->index, ev->count,
                base_name(ev->path));
        break;
    case SIPP__HUB_EV_START:
        pr->t0 = pr->last_print = now_s();
        pr->start_bytes = ev->done;
        pr->last_decile = ev->total ? (int)(ev->done * 10 / ev->total) : 0;
        human(ev->total, a, sizeof a);
        human(ev->done, b, sizeof b);
        if (ev->done)
            fprintf(stderr, "pull: [%zu/%zu] %s: resuming at %s of %s\n", ev->index, ev->count,
                    base_name(ev->path), b, a);
        else
            fprintf(stderr, "pull: [%zu/%zu] %s: downloading %s\n", ev->index, ev->count,
                    base_name(ev->path), a);
        break;
    case SIPP__HUB_EV_RESTART:
        fprintf(stderr, "%spull: %s: the hub did not continue the partial file; starting over\n",
                pr->tty ? "\r\033[K" : "", base_name(ev->path));
        pr->start_bytes = 0;
        break;
    case SIPP__HUB_EV_DATA: {
        double t = now_s();
        int decile = ev->total ? (int)(ev->done * 10 / ev->total) : 10;
        if (pr->tty ? t - pr->last_print >= 0.1 : (decile > pr->last_decile || t - pr->last_print >= 5)) {
            pr->last_decile = decile;
            print_data(pr, ev, false);
        }
        break;
    }
    case SIPP__HUB_EV_VERIFY:
        if (pr->tty || pr->last_decile < 10) print_data(pr, ev, true); /* the last state */
        if (pr->tty) fputc('\n', stderr);
        fprintf(stderr, "pull: %s: verifying sha256\n", base_name(ev->path));
        break;
    case SIPP__HUB_EV_DONE:
        fprintf(stderr, "pull: %s: verified\n", base_name(ev->path));
        break;
    }
    fflush(stderr);
}

/* ---- the command ------------------------------------------------------------------------- */

int cmd_pull(int argc, char **argv) {
    const char *name = NULL;
    bool quiet = false, mmproj = true, allow_private = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) quiet = true;
        else if (strcmp(a, "--no-mmproj") == 0) mmproj = false;
        else if (strcmp(a, "--allow-private-network") == 0) allow_private = true;
        else if (a[0] == '-') {
            cli_error("pull: unknown option '%s' (see sipp pull --help)", a);
            return CLI_USAGE;
        } else if (!name) name = a;
        else {
            cli_error("pull: one model expected (extra: '%s')", a);
            return CLI_USAGE;
        }
    }
    if (!name) {
        cli_error("pull: a model is required: OWNER/REPO[:QUANT] or OWNER/REPO/FILE.gguf");
        return CLI_USAGE;
    }
    sipp__hub_ref ref;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp__hub_ref_parse(name, &ref, &err) != SIPP_OK) {
        cli_error("pull: %s", err.message);
        return CLI_USAGE;
    }
    char dir[4096];
    cli_models_dir(dir, sizeof dir);
    const char *base = getenv("SIPP_HUB_URL");
    if (!base || !*base) base = getenv("HF_ENDPOINT");
    progress pr = {.tty = isatty(STDERR_FILENO) != 0, .quiet = quiet};
    sipp__hub_params p = {.models_dir = dir, .base_url = base, .token = getenv("HF_TOKEN"),
                          .with_mmproj = mmproj, .allow_private_network = allow_private,
                          .proxy = getenv("SIPP_HUB_PROXY"), .on_event = on_event,
                          .should_abort = should_abort, .ud = &pr};
    struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sipp__hub_pulled out;
    sipp_status st = sipp__hub_pull(&p, name, &out, &err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pr.tty && !quiet) fputs("\r\033[K", stderr);
    if (st != SIPP_OK) {
        cli_error("pull: %s", err.message);
        return CLI_FAILED;
    }
    char size[32];
    human(out.bytes, size, sizeof size);
    printf("pulled %s (%s)\n  %s\n", out.name, size, out.path);
    if (out.mmproj[0]) printf("  projector: %s\n", out.mmproj);
    if (!quiet) fprintf(stderr, "run it: sipp chat --model %s \"Hello\"\n", out.name);
    return CLI_OK;
}
