/* SPDX-License-Identifier: MIT */
/*
 * Race-window sleeps, for the unit tier only (make test-race-sleeps; the
 * CMake option VCPUREQ_RACE_SLEEPS, never in a library that ships).  Each
 * race-window hook of race.h, reached in an ordinary build of the library,
 * sleeps now and then for a random time: one hook in 8, up to
 * VCPUREQ_RACE_SLEEP_US microseconds (environment; default 1000).  The
 * protocol must hold whatever the delays, and so must every test: a test
 * that passes only when the other thread is quick (a vCPU seen in guest
 * mode before its final check, a sleeper seen blocking before its check,
 * a broadcaster preempted between two kicks) fails here at once instead of
 * once a month in CI.  The torture tier's own hooks (VCPUREQ_TORTURE) are
 * the other use of the same points.
 *
 * Any thread may reach a hook, never a signal handler; no lock is taken
 * (a per-thread generator, nanosleep()).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "race.h"

static int max_us(void)
{
	/* Read once; a benign race between threads that both read it. */
	static _Atomic int cached = -1;
	int v = atomic_load_explicit(&cached, memory_order_relaxed);

	if (v < 0) {
		const char *e = getenv("VCPUREQ_RACE_SLEEP_US");

		v = e ? atoi(e) : 1000;
		if (v < 0)
			v = 0;
		atomic_store_explicit(&cached, v, memory_order_relaxed);
	}
	return v;
}

void vcpureq__race_sleep(enum vcpureq__window w)
{
	static _Thread_local uint32_t x;
	struct timespec ts;
	int us = max_us();

	if (!x) /* a seed per thread and run */
		x = (uint32_t)(uintptr_t)&x ^ (uint32_t)time(NULL) ^
		    ((uint32_t)w << 16) ^ 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	if ((x & 7) != 0 || us == 0)
		return;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)((x >> 8) % ((uint32_t)us + 1)) * 1000;
	nanosleep(&ts, NULL);
}
