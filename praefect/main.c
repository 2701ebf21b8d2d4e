/*
 * praefect: the router. `praefect -config FILE [serve]` runs the server;
 * every subcommand is dispatched from the table in cmd/cmd.c.
 */
#include "cmd/cmd.h"

#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)(time(NULL) ^ getpid()));
	return praefect_cli(argc, argv);
}
