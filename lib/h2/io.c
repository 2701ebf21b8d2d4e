/* Generic io helpers shared by every transport. */
#include "io.h"

void io_close(struct io *io)
{
	if (!io || io->closing)
		return;
	io->closing = 1;
	io->ops->close(io);
}
