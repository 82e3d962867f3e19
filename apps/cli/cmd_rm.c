/*
 * cmd_rm.c — `sipp rm`: forget a pulled model and delete the files no other pulled name uses
 * (src/hub), or delete a model file of the models directory by its name.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "hub/hub_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: sipp rm NAME...\n"
    "\n"
    "Remove models from the models directory ($SIPP_MODELS_DIR, default ~/.cache/sipp/models).\n"
    "NAME is a pulled name (OWNER/REPO[:QUANT], OWNER/REPO/FILE.gguf, as `sipp models` lists\n"
    "them): the name goes, and so do its files unless another pulled name uses them. Any other\n"
    "NAME is a .gguf file directly in the models directory (with or without .gguf).\n";

static int rm_file(const char *dir, const char *name) {
    if (strchr(name, '/') || name[0] == '.' || !name[0]) {
        cli_error("rm: '%s' is neither a pulled name nor a file of the models directory", name);
        return CLI_FAILED;
    }
    char path[8192];
    struct stat sb;
    size_t l = strlen(name);
    bool has_ext = l > 5 && strcmp(name + l - 5, ".gguf") == 0;
    snprintf(path, sizeof path, "%s/%s%s", dir, name, has_ext ? "" : ".gguf");
    if (lstat(path, &sb) != 0 || S_ISDIR(sb.st_mode)) {
        cli_error("rm: no model '%s' in %s (sipp models lists them)", name, dir);
        return CLI_FAILED;
    }
    if (unlink(path) != 0) {
        cli_error("rm: cannot delete '%s': %s", path, strerror(errno));
        return CLI_FAILED;
    }
    printf("removed %s\n", path);
    return CLI_OK;
}

int cmd_rm(int argc, char **argv) {
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (argv[i][0] == '-') {
            cli_error("rm: unknown option '%s' (see sipp rm --help)", argv[i]);
            return CLI_USAGE;
        }
        n++;
    }
    if (n == 0) {
        cli_error("rm: a model NAME is required (see sipp models)");
        return CLI_USAGE;
    }
    char dir[4096];
    cli_models_dir(dir, sizeof dir);
    int rc = CLI_OK;
    for (int i = 1; i < argc; i++) {
        sipp__hub_ref ref;
        if (sipp__hub_ref_parse(argv[i], &ref, NULL) != SIPP_OK) {
            if (rm_file(dir, argv[i]) != CLI_OK) rc = CLI_FAILED;
            continue;
        }
        uint64_t freed = 0;
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp__hub_remove(dir, argv[i], &freed, &err) != SIPP_OK) {
            cli_error("rm: %s", err.message);
            rc = CLI_FAILED;
            continue;
        }
        char canon[1024];
        sipp__hub_ref_name(&ref, canon, sizeof canon);
        printf("removed %s (%.1f MiB freed)\n", canon, (double)freed / 1048576.0);
    }
    return rc;
}
