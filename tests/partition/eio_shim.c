/*-------------------------------------------------------------------------
 *
 * eio_shim.c
 *	  LD_PRELOAD shim for the fsync-EIO drill of tests/partition: while the
 *	  file named by $FT_EIO_TRIGGER exists, fsync, fdatasync and pwrite
 *	  fail with EIO in processes named "postgres".
 *
 * libfiu's fiu-run cannot be used: its hash_create symbol collides with
 * PostgreSQL's and the server crashes.  This shim exports only the three
 * libc functions it wraps and forwards to the next definition (RTLD_NEXT).
 * Only processes whose program is "postgres" are affected, decided once
 * when the library loads: PostgreSQL later overwrites its argv[0] area with
 * the process title, which program_invocation_short_name points into.
 * The trigger is checked with access(2) on every call: cheap next to an
 * fsync.
 *
 * tests/partition/eio_shim.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char *program_invocation_short_name;

static int (*next_fsync) (int);
static int (*next_fdatasync) (int);
static ssize_t (*next_pwrite) (int, const void *, size_t, off_t);
static int	shim_is_postgres;

/* at load time, before PostgreSQL rewrites argv: is this postgres? */
__attribute__((constructor))
static void
shim_init(void)
{
	shim_is_postgres = strcmp(program_invocation_short_name, "postgres") == 0;
}

/* true while the trigger file exists and this process is a postgres one */
static int
shim_failing(void)
{
	const char *trigger = getenv("FT_EIO_TRIGGER");

	if (trigger == NULL || trigger[0] == '\0')
		return 0;
	if (!shim_is_postgres)
		return 0;
	return access(trigger, F_OK) == 0;
}

int
fsync(int fd)
{
	if (next_fsync == NULL)
		next_fsync = (int (*) (int)) dlsym(RTLD_NEXT, "fsync");
	if (shim_failing())
	{
		errno = EIO;
		return -1;
	}
	return next_fsync(fd);
}

int
fdatasync(int fd)
{
	if (next_fdatasync == NULL)
		next_fdatasync = (int (*) (int)) dlsym(RTLD_NEXT, "fdatasync");
	if (shim_failing())
	{
		errno = EIO;
		return -1;
	}
	return next_fdatasync(fd);
}

ssize_t
pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	if (next_pwrite == NULL)
		next_pwrite = (ssize_t (*) (int, const void *, size_t, off_t)) dlsym(RTLD_NEXT, "pwrite");
	if (shim_failing())
	{
		errno = EIO;
		return -1;
	}
	return next_pwrite(fd, buf, count, offset);
}
