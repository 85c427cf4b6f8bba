/* SPDX-License-Identifier: MIT */
/*
 * VM and vCPU objects: open (create or wrap a VM fd), add vCPUs one at a
 * time (create or adopt), destroy, accessors, counters.  The one place that
 * picks a backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* The first version of struct vcpureq_vm_opts with a size field ends with
 * flags: no caller can be shorter. */
#define OPTS_SIZE_MIN \
	(offsetof(struct vcpureq_vm_opts, flags) + sizeof(unsigned int))
#define KNOWN_FLAGS VCPUREQ_VM_RETURN_FOREIGN_EINTR

/* copy_struct_from_user(): take what both sides know, default the rest,
 * refuse non-zero bytes this library does not know. */
static int copy_opts(struct vcpureq_vm_opts *dst,
		     const struct vcpureq_vm_opts *src)
{
	size_t n;

	if (!src)
		return vcpureq__err(-EINVAL, "opts is NULL");
	if (src->size < OPTS_SIZE_MIN)
		return vcpureq__errf(-EINVAL,
				     "opts.size is %zu: set it to sizeof(struct vcpureq_vm_opts) (VCPUREQ_VM_OPTS_INIT)",
				     src->size);
	n = src->size < sizeof(*dst) ? src->size : sizeof(*dst);
	memset(dst, 0, sizeof(*dst));
	memcpy(dst, src, n);
	for (; n < src->size; n++)
		if (((const unsigned char *)src)[n])
			return vcpureq__errf(-E2BIG,
					     "opts has non-zero byte %zu beyond the %zu this library knows (built against a newer vcpureq?)",
					     n, sizeof(*dst));
	dst->size = sizeof(*dst);
	return 0;
}

/*
 * ThreadSanitizer runs a program's signal handlers late, at its next safe
 * point: a kick that lands between the final check and KVM_RUN would set
 * immediate_exit only after KVM_RUN had started, and a spinning guest
 * would keep the request stranded.  So a TSan build of the library uses
 * KVM_SET_SIGNAL_MASK, where no handler is involved.  (The thread
 * backend's callback polls, and so reaches such points.)
 */
#if defined(__SANITIZE_THREAD__)
#define TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_BUILD 1
#endif
#endif
#ifndef TSAN_BUILD
#define TSAN_BUILD 0
#endif

static int check_opts(const struct vcpureq_vm_opts *o)
{
	if (o->backend != VCPUREQ_BACKEND_KVM &&
	    o->backend != VCPUREQ_BACKEND_THREAD)
		return vcpureq__err(-EINVAL, "unknown backend");
	if (o->kick_signal < 0 || o->kick_signal >= _NSIG)
		return vcpureq__err(-EINVAL, "kick_signal out of range");
	if (o->kick != VCPUREQ_KICK_DEFAULT && o->kick != VCPUREQ_KICK_SIGMASK &&
	    o->kick != VCPUREQ_KICK_IMMEDIATE_EXIT)
		return vcpureq__err(-EINVAL, "unknown kick mechanism");
	if (TSAN_BUILD && o->backend == VCPUREQ_BACKEND_KVM &&
	    o->kick == VCPUREQ_KICK_IMMEDIATE_EXIT)
		return vcpureq__err(-ENOTSUP, "IMMEDIATE_EXIT under ThreadSanitizer: it runs the kick handler late and loses kicks; this build uses KVM_SET_SIGNAL_MASK");
	if (o->backend == VCPUREQ_BACKEND_THREAD &&
	    o->kick == VCPUREQ_KICK_SIGMASK)
		return vcpureq__err(-EINVAL, "the thread backend has no KVM_RUN to give a signal mask: use VCPUREQ_KICK_DEFAULT");
	if (o->halt_poll_ns > VCPUREQ_HALT_POLL_NS_MAX)
		return vcpureq__errf(-EINVAL,
				     "halt_poll_ns %llu is above VCPUREQ_HALT_POLL_NS_MAX (%u ns): a longer poll burns a CPU on every idle halt",
				     (unsigned long long)o->halt_poll_ns,
				     VCPUREQ_HALT_POLL_NS_MAX);
	if (o->flags & ~KNOWN_FLAGS)
		return vcpureq__err(-EINVAL, "unknown bits in opts.flags");
	return 0;
}

static const struct vcpureq__backend *pick_backend(const struct vcpureq_vm_opts *o)
{
	if (o->backend == VCPUREQ_BACKEND_THREAD)
		return &vcpureq__backend_thread;
	if (o->kick == VCPUREQ_KICK_SIGMASK || TSAN_BUILD)
		return &vcpureq__backend_kvm_sigmask;
	/* The default: measured better (docs/performance.md). */
	return &vcpureq__backend_kvm_immediate_exit;
}

static void vm_free_mem(struct vcpureq_vm *vm)
{
	unsigned int i, n = atomic_load_explicit(&vm->nr_vcpus,
						 memory_order_relaxed);

	vcpureq__trace_free(vm);
	for (i = 0; i < n; i++)
		free(vm->vcpus[i]);
	free(vm->vcpus);
	pthread_mutex_destroy(&vm->add_lock);
	pthread_mutex_destroy(&vm->trace_lock);
	free(vm);
}

int vcpureq_vm_open(const struct vcpureq_vm_opts *opts, int vm_fd,
		    struct vcpureq_vm **out)
{
	struct vcpureq_vm *vm;
	long ncpu;
	int r;

	if (!out)
		return vcpureq__err(-EINVAL, "out is NULL");
	*out = NULL;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vcpureq__err(-ENOMEM, "out of memory");
	r = copy_opts(&vm->opts, opts);
	if (!r)
		r = check_opts(&vm->opts);
	if (r) {
		free(vm);
		return r;
	}
	pthread_mutex_init(&vm->add_lock, NULL);
	pthread_mutex_init(&vm->trace_lock, NULL);
	vm->ops = pick_backend(&vm->opts);
	vm->fork_gen = atomic_load_explicit(&vcpureq__fork_gen,
					    memory_order_relaxed);
	vm->can_run = vm->ops->run_guest &&
		      (vm->opts.backend != VCPUREQ_BACKEND_THREAD ||
		       vm->opts.guest);
	vm->kvm_fd = vm->vm_fd = -1;
	vm->pid = getpid();
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	vm->nr_cpus = ncpu > 0 ? (unsigned int)ncpu : 1;
	vm->kick_signal = vm->opts.kick_signal ? vm->opts.kick_signal :
						 SIGRTMIN + 5;
	/* The kick signal is the process's, not the kernel's: taken before
	 * /dev/kvm is opened, so that a signal the application already
	 * handles is refused (-EBUSY) whether or not KVM is there. */
	r = vcpureq__signal_acquire(vm->kick_signal);
	if (r) {
		vm_free_mem(vm);
		return r;
	}
	r = vm->ops->vm_open(vm, vm_fd);
	if (!r) {
		/* The vCPU table never moves: adds publish into it while
		 * broadcasts read it. */
		vm->vcpus = calloc(vm->max_vcpus, sizeof(*vm->vcpus));
		if (!vm->vcpus)
			r = vcpureq__err(-ENOMEM, "out of memory");
	}
	if (r) {
		vm->ops->vm_close(vm);
		vcpureq__signal_release(vm->kick_signal);
		vm_free_mem(vm);
		return r;
	}
	*out = vm;
	return 0;
}

int vcpureq_vm_create(const struct vcpureq_vm_opts *opts,
		      struct vcpureq_vm **out)
{
	struct vcpureq_vm *vm;
	unsigned int i, nr;
	int r;

	if (!opts || !out)
		return vcpureq__err(-EINVAL, "opts or out is NULL");
	nr = opts->size >= OPTS_SIZE_MIN ? opts->nr_vcpus : 0;
	/* What the options alone make wrong is refused before /dev/kvm is
	 * opened (the same error with or without KVM); a count above the
	 * VM's limit is known only once the VM exists, below. */
	if (opts->size >= OPTS_SIZE_MIN && nr == 0)
		return vcpureq__err(-EINVAL, "nr_vcpus is 0: a VM is created with at least one vCPU");
	if (opts->size >= OPTS_SIZE_MIN && opts->max_vcpus &&
	    nr > opts->max_vcpus)
		return vcpureq__errf(-EINVAL, "nr_vcpus %u is above opts.max_vcpus %u",
				     nr, opts->max_vcpus);
	r = vcpureq_vm_open(opts, -1, &vm);
	if (r)
		return r;
	if (nr == 0 || nr > vm->max_vcpus) {
		r = vcpureq__errf(-EINVAL, "nr_vcpus is %u, must be 1..%u (max_vcpus)",
				  nr, vm->max_vcpus);
		goto fail;
	}
	for (i = 0; i < nr; i++) {
		r = vcpureq_vcpu_create(vm, i, NULL);
		if (r)
			goto fail;
	}
	*out = vm;
	return 0;
fail:
	{
		const char *msg = vcpureq_errmsg();
		char keep[256];

		/* The failure's message, not the cleanup's. */
		strncpy(keep, msg, sizeof(keep) - 1);
		keep[sizeof(keep) - 1] = '\0';
		vcpureq_vm_free(vm);
		vcpureq__errf(r, "%s", keep);
	}
	return r;
}

/* Add a vCPU: @fd < -1 means create, else adopt @fd / @run. */
static int add_vcpu(struct vcpureq_vm *vm, unsigned long id, bool adopt,
		    int fd, struct kvm_run *run, size_t run_size,
		    struct vcpureq_vcpu **out)
{
	struct vcpureq_vcpu *v;
	unsigned int i, n;
	int r;

	if (out)
		*out = NULL;
	r = vcpureq__check_vm(vm);
	if (r)
		return r;
	pthread_mutex_lock(&vm->add_lock);
	n = atomic_load_explicit(&vm->nr_vcpus, memory_order_relaxed);
	if (n >= vm->max_vcpus) {
		r = vcpureq__errf(-ENOSPC, "the VM has its %u vCPUs (max_vcpus)",
				  vm->max_vcpus);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (vm->vcpus[i]->id == id) {
			r = vcpureq__errf(-EEXIST, "vCPU id %lu is already in the VM",
					  id);
			goto out;
		}
	v = aligned_alloc(VCPUREQ__CACHELINE,
			  (sizeof(*v) + VCPUREQ__CACHELINE - 1) &
				  ~(size_t)(VCPUREQ__CACHELINE - 1));
	if (!v) {
		r = vcpureq__err(-ENOMEM, "out of memory");
		goto out;
	}
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->ops = vm->ops;
	v->id = id;
	v->index = n;
	v->fd = -1;
	r = adopt ? vm->ops->vcpu_adopt(v, fd, run, run_size) :
		    vm->ops->vcpu_create(v);
	if (r) {
		vm->ops->vcpu_release(v);
		free(v);
		goto out;
	}
	vcpureq__trace_vcpu_added(vm, v);
	vm->vcpus[n] = v;
	/* Publish: release pairs with the acquire in vcpureq__nr_vcpus();
	 * a reader that sees n + 1 sees the slot and the vCPU whole. */
	atomic_store_explicit(&vm->nr_vcpus, n + 1, memory_order_release);
	if (out)
		*out = v;
out:
	pthread_mutex_unlock(&vm->add_lock);
	return r;
}

int vcpureq_vcpu_create(struct vcpureq_vm *vm, unsigned long vcpu_id,
			struct vcpureq_vcpu **out)
{
	return add_vcpu(vm, vcpu_id, false, -1, NULL, 0, out);
}

int vcpureq_vcpu_adopt(struct vcpureq_vm *vm, unsigned long vcpu_id,
		       int vcpu_fd, struct kvm_run *run, size_t run_size,
		       struct vcpureq_vcpu **out)
{
	return add_vcpu(vm, vcpu_id, true, vcpu_fd, run, run_size, out);
}

/*
 * Whether thread @tid of process @pid is gone or going: tgkill() finds no
 * such thread, or the thread has started its exit (PF_EXITING, field 9 of
 * /proc/<pid>/task/<tid>/stat).  The second matters: pthread_join()
 * returns when the exiting thread clears its tid (exit_mm()), before the
 * kernel releases the task, so for a moment after a join tgkill() still
 * finds it.  PF_EXITING is set earlier than either (exit_signals()).
 */
#define VCPUREQ__PF_EXITING 0x4u
static bool thread_gone(pid_t pid, pid_t tid)
{
	char path[64], buf[512], *p;
	unsigned long flags = 0;
	ssize_t n;
	int fd, i;

	if (syscall(SYS_tgkill, pid, tid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT && access("/proc/self/stat", F_OK) == 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* After the command name's ')': state ppid pgrp session tty_nr
	 * tpgid flags. */
	p = strrchr(buf, ')');
	for (i = 0; p && i < 7; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%lu", &flags) != 1)
		return false;
	return flags & VCPUREQ__PF_EXITING;
}

int vcpureq_vm_destroy(struct vcpureq_vm *vm)
{
	unsigned int i, n;

	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if (vcpureq__self && vcpureq__self->vm == vm)
		return vcpureq__err(-EBUSY, "a vCPU thread cannot destroy its own VM");
	n = vcpureq__nr_vcpus(vm);
	for (i = 0; i < n; i++) {
		struct vcpureq_vcpu *v = vm->vcpus[i];
		/* Acquire: pairs with the release store of 0 at the end of
		 * vcpureq_vcpu_unbind(): the unbind is done before we free. */
		pid_t tid = atomic_load_explicit(&v->tid, memory_order_acquire);

		if (!tid)
			continue;
		/* A vCPU thread that exited without unbinding leaves its
		 * tid behind: the VM is not really in use any more. */
		if (tid > 0 && thread_gone(vm->pid, tid)) {
			atomic_store_explicit(&v->tid, 0, memory_order_relaxed);
			continue;
		}
		return vcpureq__errf(-EBUSY,
				     "vCPU %lu is still bound to a thread; unbind it first",
				     v->id);
	}
	atomic_store_explicit(&vm->state, VCPUREQ__VM_DESTROYED,
			      memory_order_relaxed);
	for (i = 0; i < n; i++) {
		/* Work no vCPU thread will take: completed as cancelled,
		 * here (every waiter wakes, every async done() is called). */
		vcpureq__work_run(vm->vcpus[i], true);
		vm->ops->vcpu_release(vm->vcpus[i]);
	}
	vm->ops->vm_close(vm);
	vcpureq__signal_release(vm->kick_signal);
	return 0;
}

int vcpureq_vm_free(struct vcpureq_vm *vm)
{
	if (!vm)
		return 0;
	if (atomic_load_explicit(&vm->state, memory_order_relaxed) ==
	    VCPUREQ__VM_LIVE) {
		int r = vcpureq_vm_destroy(vm);

		if (r)
			return r;
	}
	vm_free_mem(vm);
	return 0;
}

struct vcpureq_vcpu *vcpureq_vm_vcpu(const struct vcpureq_vm *vm,
				     unsigned int index)
{
	if (!vm || index >= vcpureq__nr_vcpus(vm))
		return NULL;
	return vm->vcpus[index];
}

struct vcpureq_vcpu *vcpureq_vm_vcpu_by_id(const struct vcpureq_vm *vm,
					   unsigned long vcpu_id)
{
	unsigned int i, n;

	if (!vm)
		return NULL;
	n = vcpureq__nr_vcpus(vm);
	for (i = 0; i < n; i++)
		if (vm->vcpus[i]->id == vcpu_id)
			return vm->vcpus[i];
	return NULL;
}

unsigned int vcpureq_vm_nr_vcpus(const struct vcpureq_vm *vm)
{
	return vm ? vcpureq__nr_vcpus(vm) : 0;
}

unsigned int vcpureq_vm_max_vcpus(const struct vcpureq_vm *vm)
{
	return vm ? vm->max_vcpus : 0;
}

unsigned long vcpureq_vcpu_id(const struct vcpureq_vcpu *vcpu)
{
	return vcpu ? vcpu->id : 0;
}

unsigned int vcpureq_vcpu_index(const struct vcpureq_vcpu *vcpu)
{
	return vcpu ? vcpu->index : 0;
}

struct vcpureq_vm *vcpureq_vcpu_vm(const struct vcpureq_vcpu *vcpu)
{
	return vcpu ? vcpu->vm : NULL;
}

int vcpureq_vcpu_set_user_data(struct vcpureq_vcpu *vcpu, void *data)
{
	if (!vcpu)
		return vcpureq__err(-EINVAL, "vcpu is NULL");
	/* Release: pairs with the acquire in vcpureq_vcpu_user_data(); without
	 * it a reader could see the pointer before what it points to. */
	atomic_store_explicit(&vcpu->user_data, data, memory_order_release);
	return 0;
}

void *vcpureq_vcpu_user_data(const struct vcpureq_vcpu *vcpu)
{
	/* Acquire: pairs with the release in vcpureq_vcpu_set_user_data(). */
	return vcpu ? atomic_load_explicit(
			      &((struct vcpureq_vcpu *)vcpu)->user_data,
			      memory_order_acquire) :
		      NULL;
}

int vcpureq_vm_kick_signal(const struct vcpureq_vm *vm)
{
	int r = vcpureq__check_vm(vm);

	return r ? r : vm->kick_signal;
}

enum vcpureq_kick_mechanism vcpureq_vm_kick_mechanism(const struct vcpureq_vm *vm)
{
	return vm ? vm->ops->kick : VCPUREQ_KICK_DEFAULT;
}
