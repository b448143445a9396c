/* cli.h — elmctl's subcommands, as elmctl.c's command table calls them. Each takes argc/argv
 * starting at the subcommand's name and returns the process exit code (0 ok, 1 failure, 2 usage).
 * One file each, or a family per file: cmd_generate.c (generate, tokenize), cmd_chat.c (chat),
 * cmd_embed.c (embed), cmd_inspect.c (inspect, quantize), cmd_start.c (start, stop),
 * cmd_daemon.c (status, load, unload, sessions, stats), cmd_eval.c (perplexity, kld),
 * cmd_calib.c (imatrix, distill-data), cmd_prune.c (prune). */
#ifndef ELM_CLI_H
#define ELM_CLI_H

int cli_cmd_generate(int argc, char **argv);
int cli_cmd_chat(int argc, char **argv);
int cli_cmd_tokenize(int argc, char **argv);
int cli_cmd_embed(int argc, char **argv);
int cli_cmd_inspect(int argc, char **argv);
int cli_cmd_quantize(int argc, char **argv);
int cli_cmd_start(int argc, char **argv);
int cli_cmd_stop(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_load(int argc, char **argv);
int cli_cmd_unload(int argc, char **argv);
int cli_cmd_sessions(int argc, char **argv);
int cli_cmd_stats(int argc, char **argv);
int cli_cmd_perplexity(int argc, char **argv);
int cli_cmd_kld(int argc, char **argv);
int cli_cmd_imatrix(int argc, char **argv);
int cli_cmd_distill_data(int argc, char **argv);
int cli_cmd_prune(int argc, char **argv);

#endif
