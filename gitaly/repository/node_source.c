/*
 * Reaching a repository on another node, as ReplicateRepository and
 * CreateFork do: the node's address from the gitaly-servers metadata, and
 * the environment under which git fetches from it through gitaly-ssh.
 */
#include "repository/repository.h"
#include "base/util.h"
#include "grpc/auth.h"
#include "grpc/metadata.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

/* gitaly-servers metadata: base64 of {"<storage>":{"address":...,"token":...}}. */
int reposvc_source_server(struct grpc_call *call, const char *storage, char **address, char **token,
			 struct strbuf *msg)
{
	const char *v = grpc_metadata_value(grpc_call_metadata(call), "gitaly-servers");
	struct strbuf dec = STRBUF_INIT;
	json_t *j = NULL, *s;
	int rc = -1;

	if (!v || !*v) {
		strbuf_addstr(msg, "empty gitaly-servers metadata");
		goto out;
	}
	if (grpc_base64_decode(&dec, v, strlen(v)) < 0) {
		strbuf_addstr(msg, "failed decoding base64");
		goto out;
	}
	j = json_loadb(dec.buf, dec.len, 0, NULL);
	if (!json_is_object(j)) {
		strbuf_addstr(msg, "failed unmarshalling json");
		goto out;
	}
	s = json_object_get(j, storage ? storage : "");
	if (!json_is_object(s)) {
		strbuf_addstr(msg, "storage name not found");
		goto out;
	}
	*address = xstrdup(json_string_value(json_object_get(s, "address")) ?
			   json_string_value(json_object_get(s, "address")) : "");
	*token = xstrdup(json_string_value(json_object_get(s, "token")) ?
			 json_string_value(json_object_get(s, "token")) : "");
	rc = 0;
out:
	json_decref(j);
	strbuf_release(&dec);
	return rc;
}

/* Upstream addresses our channel understands: tcp://, unix:, host:port, dns:[//auth/]host:port. */
const char *reposvc_channel_target(const char *address)
{
	if (!strncmp(address, "dns:", 4)) {
		address += 4;
		if (!strncmp(address, "//", 2)) {
			const char *slash = strchr(address + 2, '/');
			address = slash ? slash + 1 : address + 2;
		}
	}
	return address;
}

void reposvc_ssh_env(struct gitaly *g, struct grpc_call *call, const Gitaly__Repository *repo, const char *address,
		     const char *token, struct strvec *env)
{
	const struct grpc_metadata *in = grpc_call_metadata(call);
	const char *corr = grpc_metadata_value(in, "x-gitlab-correlation-id");
	struct strbuf flagsv = STRBUF_INIT;
	json_t *payload = json_object(), *opts = json_array();
	char *p;

	/* the source's upload-pack, reached through gitaly-ssh and the streaming SSHUploadPack RPC */
	json_object_set_new(payload, "repository", gitaly_repository_json(repo));
	json_array_append_new(opts, json_string("uploadpack.allowAnySHA1InWant=true"));
	json_object_set_new(payload, "gitConfigOptions", opts);
	json_object_set_new(payload, "gitProtocol", json_string("version=2"));
	p = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	for (size_t i = 0; i < in->nr; i++) {
		const char *k = in->v[i].key;
		if (strncmp(k, "gitaly-feature-", 15))
			continue;
		if (flagsv.len)
			strbuf_addch(&flagsv, ',');
		strbuf_addf(&flagsv, "%s:%s", k + 15, in->v[i].value);
	}
	strvec_pushf(env, "GITALY_PAYLOAD=%s", p);
	strvec_pushf(env, "GIT_SSH_COMMAND=%s/gitaly-ssh upload-pack", g->cfg.bin_dir);
	strvec_pushf(env, "GITALY_ADDRESS=%s", address);
	strvec_pushf(env, "GITALY_TOKEN=%s", token ? token : "");
	strvec_pushf(env, "GITALY_FEATUREFLAGS=%s", flagsv.buf);
	strvec_pushf(env, "CORRELATION_ID=%s", corr ? corr : "");
	strvec_push(env, "GIT_SSH_VARIANT=simple");
	strvec_pushf(env, "SSL_CERT_DIR=%s", getenv("SSL_CERT_DIR") ? getenv("SSL_CERT_DIR") : "");
	strvec_pushf(env, "SSL_CERT_FILE=%s", getenv("SSL_CERT_FILE") ? getenv("SSL_CERT_FILE") : "");
	free(p);
	strbuf_release(&flagsv);
}
