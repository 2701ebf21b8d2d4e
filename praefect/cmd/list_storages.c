/* `praefect list-storages`: the virtual storages and their nodes, from the config alone. */
#include "cmd/cmd.h"
#include "base/util.h"

#include <stdio.h>
#include <string.h>

int cmd_list_storages(int argc, char **argv, void *ctx)
{
	struct praefect_config *cfg = ctx;
	const char *only = NULL;
	const struct cli_flag flags[] = { { .name = "virtual-storage", .type = CLI_STRING, .str = &only,
					   .help = "list only the storages of this virtual storage" } };
	size_t w[3] = { strlen("VIRTUAL_STORAGE"), strlen("NODE"), strlen("ADDRESS") };
	int found = 0, next, rc;

	if (cmd_flags("list-storages", flags, ARRAY_SIZE(flags), 0, argc, argv, &next, &rc) < 0)
		return rc;
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		if (only && *only && strcmp(only, cfg->vs[i].name))
			continue;
		found = 1;
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++) {
			w[0] = MAX(w[0], strlen(cfg->vs[i].name));
			w[1] = MAX(w[1], strlen(cfg->vs[i].nodes[j].storage));
			w[2] = MAX(w[2], strlen(cfg->vs[i].nodes[j].address));
		}
	}
	if (!found) {
		printf("No virtual storages named %s.\n", only);
		return 0;
	}
	printf("%-*s\t%-*s\t%-*s \n", (int)w[0], "VIRTUAL_STORAGE", (int)w[1], "NODE", (int)w[2], "ADDRESS");
	for (size_t i = 0; i < cfg->nr_vs; i++) {
		if (only && *only && strcmp(only, cfg->vs[i].name))
			continue;
		for (size_t j = 0; j < cfg->vs[i].nr_nodes; j++)
			printf("%-*s\t%-*s\t%-*s\t\n", (int)w[0], cfg->vs[i].name, (int)w[1],
			       cfg->vs[i].nodes[j].storage, (int)w[2], cfg->vs[i].nodes[j].address);
	}
	return 0;
}
