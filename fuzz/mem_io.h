/*
 * A memory transport (struct io) for fuzz harnesses: it delivers the input
 * from the loop in chunks, as a socket would, and completes each write one
 * loop turn later, reading every written byte first so that ASan reports a
 * buffer freed before its write completed.
 */
#ifndef FUZZ_MEM_IO_H
#define FUZZ_MEM_IO_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "h2/io.h"

struct mem_io;

/* What the driver knows; outlives the transport. */
struct mem_feed {
	const uint8_t *in;
	size_t len, off, chunk;  /* chunk: bytes per read */
	int send_eof, eof_sent;  /* send_eof: end with UV_EOF once the input is read */
	struct mem_io *conn;     /* NULL once the transport is gone */
};

struct mem_pending_write {
	const char *buf;
	size_t len;
	io_write_cb cb;
	void *arg;
};

struct mem_io {
	struct io io;
	uv_idle_t tick;          /* one turn of deferred work per loop iteration */
	struct mem_feed *feed;
	int reading;
	int close_requested;
	struct mem_pending_write *writes;
	size_t writes_nr, writes_alloc;
};

/* A transport reading from F; sets F->conn until it is closed and freed. */
struct mem_io *mem_io_new(uv_loop_t *loop, struct mem_feed *f);

/* Whether the transport still has something to do on a coming loop turn. */
int mem_io_busy(const struct mem_io *m);

#endif
