/*
 * main.c — `sipp`: dispatches to one file per subcommand.
 */
#include "cli.h"

#include <string.h>

static const char usage[] =
    "usage: sipp <command> [options] [TEXT]\n"
    "\n"
    "Run GGUF models locally with Sipp, or send the same requests to a Sipp gateway or a\nprovider (query/chat/embed --gateway URL --target NAME, --provider KIND --remote-model M).\n"
    "\n"
    "commands:\n"
    "  query   complete a raw prompt (no template)\n"
    "  chat    answer a message, rendered with the model's own chat template\n"
    "  listen  transcribe an audio file (a model with an audio encoder: --mmproj)\n"
    "  embed   print the embedding vector of a text\n"
    "  info    show a model's metadata, capabilities and chat template\n"
    "  models  list the models in the models directory, pulled ones included\n"
    "  pull    download a model from a Hugging Face-style hub (OWNER/REPO[:QUANT])\n"
    "  rm      remove a pulled model (or a file of the models directory)\n"
    "\n"
    "`sipp <command> --help` shows each command's options.\n"
    "Models are looked up by path, by pulled name (OWNER/REPO[:QUANT]) or in $SIPP_MODELS_DIR\n"
    "(default ~/.cache/sipp/models).\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("sipp %s\n", sipp_version());
        return CLI_OK;
    }
    if (strcmp(cmd, "query") == 0) return cmd_generate(argc - 1, argv + 1, false);
    if (strcmp(cmd, "chat") == 0) return cmd_generate(argc - 1, argv + 1, true);
    if (strcmp(cmd, "listen") == 0) return cmd_listen(argc - 1, argv + 1);
    if (strcmp(cmd, "embed") == 0) return cmd_embed(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "models") == 0) return cmd_models(argc - 1, argv + 1);
    if (strcmp(cmd, "pull") == 0) return cmd_pull(argc - 1, argv + 1);
    if (strcmp(cmd, "rm") == 0) return cmd_rm(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see sipp --help)", cmd);
    return CLI_USAGE;
}
