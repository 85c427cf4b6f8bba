/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend: guest mode is ioctl(KVM_RUN) on a real vCPU, with one of
 * two kick mechanisms (docs/protocol.md has the measurements):
 *
 * SIGMASK ("variant A"): the kick signal is blocked in the vCPU thread at
 * all times, and KVM_SET_SIGNAL_MASK gives KVM_RUN a mask with it
 * unblocked.  KVM applies that mask only for the duration of the ioctl and
 * checks for pending signals before every entry into the guest (and in its
 * in-kernel halt), so a kick sent at any time after the final request check
 * is either pending when KVM_RUN starts (immediate -EINTR) or interrupts
 * the running or halted guest: the user-space equivalent of "enable
 * interrupts atomically when entering the guest".  No handler runs; the
 * pending signal is taken with one sigtimedwait() before the next
 * IN_GUEST_MODE publish (prepare_entry), off the kick-to-handler path.
 *
 * IMMEDIATE_EXIT ("variant B"): the kick signal is unblocked in the vCPU
 * thread and its handler (signal.c) sets kvm_run->immediate_exit through a
 * per-thread pointer.  prepare_entry clears it before IN_GUEST_MODE is
 * published; a kick after the publish either runs the handler before
 * KVM_RUN starts (KVM sees immediate_exit and returns -EINTR at once) or
 * finds the thread inside KVM_RUN, where the pending signal makes KVM leave
 * the guest (or its halt) with -EINTR and the handler runs on the way out.
 * No KVM_SET_SIGNAL_MASK (no siglock round trip per KVM_RUN), no drain.
 *
 * Both use immediate_exit for the two things only the vCPU thread does:
 * completing a pending I/O exit without running the guest, and a request
 * made from the vCPU thread itself while in guest mode (a signal handler).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "kvm_arch.h"

#define KVM_DEV "/dev/kvm"

static int open_dev(void)
{
	int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
	int e = errno;

	if (fd >= 0)
		return fd;
	if (e == ENOENT || e == ENODEV || e == ENXIO)
		return vcpureq__errf(-e,
				     "%s: %s; %s, or use the thread backend",
				     KVM_DEV, strerror(e),
				     vcpureq__kvm_arch_no_kvm_hint);
	if (e == EACCES || e == EPERM)
		return vcpureq__errf(-e,
				     "%s: %s; add this user to the 'kvm' group (or fix the device's permissions)",
				     KVM_DEV, strerror(e));
	return vcpureq__errf(-e, "%s: %s", KVM_DEV, strerror(e));
}

static int need_cap(int fd, int cap, const char *name)
{
	if (ioctl(fd, KVM_CHECK_EXTENSION, cap) <= 0)
		return vcpureq__errf(-ENOTSUP,
				     "%s lacks capability %s, which vcpureq needs; use a newer kernel or the thread backend",
				     KVM_DEV, name);
	return 0;
}

/* The VM's vCPU limit: KVM_CAP_MAX_VCPUS asked of the VM (per-VM since
 * KVM_CAP_CHECK_EXTENSION_VM), else of the system. */
static int max_vcpus(int vm_fd, int kvm_fd)
{
	int max = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (max <= 0 && kvm_fd >= 0)
		max = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return max;
}

/*
 * What an fd is, from its /proc/self/fd link: "anon_inode:kvm-vm",
 * "anon_inode:kvm-vcpu:N", "/dev/kvm", "pipe:[..]",
 * "anon_inode:[eventfd]", a path...  0 with @buf filled; -EBADF for a
 * closed fd; -ENOENT when /proc is not mounted (the caller falls back to
 * ioctls).
 */
static int fd_what(int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	if (fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, len - 1);
	if (n < 0)
		return -ENOENT;
	buf[n] = '\0';
	return 0;
}

#define LINK_VM "anon_inode:kvm-vm"
#define LINK_VCPU "anon_inode:kvm-vcpu:"

/* A wrapped VM fd must be one: a closed fd, /dev/kvm, a vCPU fd, a pipe...
 * are named here, not reported later as a missing capability. */
static int check_vm_fd(int fd)
{
	char what[256];
	int r = fd_what(fd, what, sizeof(what));

	if (r == -EBADF)
		return vcpureq__errf(-EBADF, "vm_fd %d is not an open file descriptor",
				     fd);
	if (r == 0) {
		if (!strcmp(what, LINK_VM))
			return 0;
		if (!strcmp(what, KVM_DEV))
			return vcpureq__errf(-EINVAL,
					     "vm_fd %d is the /dev/kvm system fd, not a VM fd: KVM_CREATE_VM gives one",
					     fd);
		return vcpureq__errf(-EINVAL,
				     "vm_fd %d is %s, not a KVM VM fd (%s)", fd,
				     what, LINK_VM);
	}
	/* No /proc: only /dev/kvm answers KVM_GET_API_VERSION, and only a
	 * VM fd (or /dev/kvm) answers KVM_CHECK_EXTENSION. */
	if (ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION)
		return vcpureq__errf(-EINVAL,
				     "vm_fd %d is the /dev/kvm system fd, not a VM fd: KVM_CREATE_VM gives one",
				     fd);
	if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0)
		return vcpureq__errf(-EINVAL,
				     "vm_fd %d is not a KVM VM fd (KVM_CHECK_EXTENSION: %s)",
				     fd, strerror(errno));
	return 0;
}

static int kvm_vm_open(struct vcpureq_vm *vm, int vm_fd)
{
	int r, kvm_fd, mmap_size, max;

	if (vm_fd >= 0 && (r = check_vm_fd(vm_fd)))
		return r;

	kvm_fd = open_dev();
	if (kvm_fd < 0 && vm_fd < 0)
		return kvm_fd;
	if (kvm_fd >= 0) {
		r = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
		if (r != KVM_API_VERSION) {
			close(kvm_fd);
			return vcpureq__errf(-ENOTSUP, "%s: KVM API version %d, need %d",
					     KVM_DEV, r, KVM_API_VERSION);
		}
		mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
		if (mmap_size >= (int)sizeof(struct kvm_run))
			vm->run_size = (size_t)mmap_size;
	}
	if (vm_fd < 0) {
		vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, vm->opts.kvm_vm_type);
		if (vm_fd < 0) {
			r = vcpureq__errf(-errno, "KVM_CREATE_VM (type %lu): %s",
					  vm->opts.kvm_vm_type, strerror(errno));
			close(kvm_fd);
			return r;
		}
		vm->own_vm_fd = true;
		vm->kvm_fd = kvm_fd;
	} else if (kvm_fd >= 0) {
		/* Wrapping the VMM's VM: /dev/kvm was only needed for the
		 * mmap size; the VMM may have dropped access to it. */
		close(kvm_fd);
		kvm_fd = -1;
	}
	vm->vm_fd = vm_fd;
	/* Capabilities asked of the VM fd work for a wrapped VM too. */
	if ((r = need_cap(vm_fd, KVM_CAP_IMMEDIATE_EXIT,
			  "KVM_CAP_IMMEDIATE_EXIT")) ||
	    (r = need_cap(vm_fd, KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY")))
		return r;
	max = max_vcpus(vm_fd, kvm_fd);
	if (max <= 0)
		max = 1;
	if (vm->opts.max_vcpus > (unsigned int)max)
		return vcpureq__errf(-EINVAL,
				     "max_vcpus %u is above the VM's limit %d (KVM_CAP_MAX_VCPUS)",
				     vm->opts.max_vcpus, max);
	vm->max_vcpus = vm->opts.max_vcpus ? vm->opts.max_vcpus :
					     (unsigned int)max;
	return 0;
}

static void kvm_vm_close(struct vcpureq_vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_stray; i++)
		close(vm->stray[i].fd);
	free(vm->stray);
	vm->stray = NULL;
	vm->nr_stray = 0;
	if (vm->own_vm_fd && vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	vm->own_vm_fd = false;
}

static int map_run(struct vcpureq_vcpu *vcpu)
{
	size_t size = vcpu->vm->run_size;
	void *p;

	if (!size)
		return vcpureq__err(-ENOTSUP,
				    "the kvm_run mapping size is unknown (/dev/kvm could not be opened): adopt the vCPU with its kvm_run mapping");
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (p == MAP_FAILED)
		return vcpureq__errf(-errno, "mmap of kvm_run for vCPU %lu: %s",
				     vcpu->id, strerror(errno));
	vcpu->run = p;
	vcpu->run_size = size;
	vcpu->own_run = true;
	return 0;
}

/* A vCPU fd of @id kept from a failed create (vm->stray), taken out of
 * the list; -1 if none.  Under add_lock. */
static int take_stray(struct vcpureq_vm *vm, unsigned long id)
{
	unsigned int i;
	int fd;

	for (i = 0; i < vm->nr_stray; i++)
		if (vm->stray[i].id == id) {
			fd = vm->stray[i].fd;
			vm->stray[i] = vm->stray[--vm->nr_stray];
			return fd;
		}
	return -1;
}

/* Keep a created vCPU fd whose mapping failed (KVM would refuse the id
 * again with -EEXIST).  false: no memory to keep it (then it is closed,
 * and the id is lost to this VM, as the message says). */
static bool keep_stray(struct vcpureq_vm *vm, unsigned long id, int fd)
{
	struct vcpureq__stray_fd *n;

	n = realloc(vm->stray, (vm->nr_stray + 1) * sizeof(*n));
	if (!n)
		return false;
	vm->stray = n;
	n[vm->nr_stray].id = id;
	n[vm->nr_stray].fd = fd;
	vm->nr_stray++;
	return true;
}

static int kvm_vcpu_create(struct vcpureq_vcpu *vcpu)
{
	int r, fd = take_stray(vcpu->vm, vcpu->id);

	if (fd < 0)
		fd = ioctl(vcpu->vm->vm_fd, KVM_CREATE_VCPU, vcpu->id);

	if (fd < 0 && (errno == EMFILE || errno == ENFILE))
		return vcpureq__errf(-errno,
				     "KVM_CREATE_VCPU %lu: %s; every vCPU needs a file descriptor: raise RLIMIT_NOFILE (ulimit -n) above the vCPU count plus what the VMM uses",
				     vcpu->id, strerror(errno));
	if (fd < 0)
		return vcpureq__errf(-errno, "KVM_CREATE_VCPU %lu: %s", vcpu->id,
				     strerror(errno));
	vcpu->fd = fd;
	vcpu->own_fd = true;
	vcpu->lapic_in_kernel =
		vcpureq__kvm_arch_irqchip_in_kernel(vcpu->vm->vm_fd, fd);
	r = vcpureq__kvm_arch_vcpu_init(vcpu, vcpu->vm->vm_fd);
	if (!r)
		r = map_run(vcpu);
	if (r && keep_stray(vcpu->vm, vcpu->id, fd)) {
		char msg[160];

		/* The fd outlives this failed add: a retry with the same id
		 * maps it again.  (The message is copied: errf formats into
		 * the buffer vcpureq_errmsg() returns.) */
		vcpu->fd = -1;
		vcpu->own_fd = false;
		snprintf(msg, sizeof(msg), "%s", vcpureq_errmsg());
		vcpureq__errf(r, "%s; vcpureq keeps the vCPU fd: retry vcpureq_vcpu_create() with id %lu",
			      msg, vcpu->id);
	}
	return r;
}

/*
 * Whether @fd is a vCPU fd of the same VM as @ref (a vCPU fd already in
 * it).  Every vCPU fd of a VM maps, at page offset
 * KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) (the cap's value is the
 * offset: 2 on x86, 1 on arm64), the VM's one coalesced-MMIO ring page
 * (kvm_vcpu_fault()).  The ring (u32 first, last, then 24-byte entries,
 * KVM_COALESCED_MMIO_MAX of them) leaves the last 8 bytes of the page
 * unused (page size - 8 is 8 mod 24 for every power-of-two page >= 4K),
 * and neither KVM (coalesced_mmio.c writes entries below MAX only) nor a
 * VMM (it reads entries only) touches them: a value written there through
 * one mapping shows through the other iff both are the same page.
 * Restored after.  1 same VM, 0 not, -1 cannot tell (no cap, @ref cannot
 * be mapped).  Under add_lock: no two probes of one VM overlap.
 */
static int same_vm(int vm_fd, int fd, int ref)
{
	long pg = sysconf(_SC_PAGESIZE);
	int cap = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	volatile uint64_t *ta, *tb;
	uint64_t old, probe;
	void *a, *b;
	int same;

	if (cap <= 0 || pg < 4096)
		return -1;
	b = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_SHARED, ref,
		 (off_t)cap * pg);
	if (b == MAP_FAILED)
		return -1;
	a = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 (off_t)cap * pg);
	if (a == MAP_FAILED) {
		munmap(b, (size_t)pg);
		return 0; /* no such page: not a vCPU fd at all */
	}
	ta = (volatile uint64_t *)((char *)a + pg - 8);
	tb = (volatile uint64_t *)((char *)b + pg - 8);
	old = *ta;
	probe = *tb + 1;
	if (probe == old)
		probe++;
	*ta = probe;
	same = *tb == probe;
	*ta = old; /* the same page or not, put back what was there */
	munmap(a, (size_t)pg);
	munmap(b, (size_t)pg);
	return same;
}

/* Whether @fd is the same open file as an adopted vCPU's fd (a dup):
 * kcmp(KCMP_FILE); false where the kernel lacks kcmp.  For when the fd's
 * name gives no id (the id check finds a dup otherwise). */
static bool is_dup(const struct vcpureq_vcpu *vcpu, int fd, unsigned int *idx)
{
	unsigned int i;

	for (i = 0; i < vcpu->index; i++)
		if (syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, fd,
			    vcpu->vm->vcpus[i]->fd) == 0) {
			*idx = i;
			return true;
		}
	return false;
}

/* An adopted fd must be a vCPU fd of this VM, of @vcpu_id (see
 * vcpureq_vcpu_adopt() in the header for what can be checked when). */
static int check_vcpu_fd(struct vcpureq_vcpu *vcpu, int fd)
{
	struct vcpureq_vm *vm = vcpu->vm;
	size_t vl = strlen(LINK_VCPU);
	bool id_known = false;
	char what[256], *end;
	unsigned long id;
	unsigned int i;
	int r;

	r = fd_what(fd, what, sizeof(what));
	if (r == -EBADF)
		return vcpureq__errf(-EBADF, "vcpu_fd %d is not an open file descriptor",
				     fd);
	if (r == 0 && !strncmp(what, LINK_VCPU, vl)) {
		errno = 0;
		id = strtoul(what + vl, &end, 10);
		if (!errno && !*end && id != vcpu->id)
			return vcpureq__errf(-EINVAL,
					     "vcpu_fd %d is the fd of vCPU id %lu, not of vCPU id %lu",
					     fd, id, vcpu->id);
		id_known = !errno && !*end;
	} else if (r == 0 && !(!strncmp(what, LINK_VCPU, vl - 1) && !what[vl - 1])) {
		/* ("anon_inode:kvm-vcpu", without the id, is a vCPU fd of a
		 * kernel from before the id was put in the name.) */
		if (!strcmp(what, KVM_DEV))
			return vcpureq__errf(-EINVAL,
					     "vcpu_fd %d is the /dev/kvm system fd, not a vCPU fd: KVM_CREATE_VCPU on the VM fd gives one",
					     fd);
		if (!strcmp(what, LINK_VM))
			return vcpureq__errf(-EINVAL,
					     "vcpu_fd %d is a VM fd (%s), not a vCPU fd: KVM_CREATE_VCPU on it gives one",
					     fd, what);
		return vcpureq__errf(-EINVAL,
				     "vcpu_fd %d is %s, not a KVM vCPU fd (%sN)", fd,
				     what, LINK_VCPU);
	} else if (r) {
		/* No /proc: a vCPU fd maps its kvm_run at offset 0 (neither
		 * /dev/kvm, a VM fd, a pipe nor an eventfd can be mapped). */
		long pg = sysconf(_SC_PAGESIZE);
		void *p = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd, 0);

		if (p == MAP_FAILED)
			return vcpureq__errf(-EINVAL,
					     "vcpu_fd %d is not a KVM vCPU fd (it cannot map a kvm_run: %s)",
					     fd, strerror(errno));
		munmap(p, (size_t)pg);
	}
	/* With the id known and checked, a dup of an adopted fd has an id
	 * already in the VM (-EEXIST before the backend is asked). */
	if (!id_known && is_dup(vcpu, fd, &i))
		return vcpureq__errf(-EEXIST,
				     "vcpu_fd %d is vCPU %lu's fd (index %u), already in the VM",
				     fd, vm->vcpus[i]->id, i);
	/* Another VM's vCPU: checked against this VM's first vCPU, so the
	 * first vCPU of a VM cannot be checked. */
	if (vcpu->index > 0 &&
	    same_vm(vm->vm_fd, fd, vm->vcpus[0]->fd) == 0)
		return vcpureq__errf(-EINVAL,
				     "vcpu_fd %d (vCPU id %lu) belongs to another VM: its coalesced-MMIO page is not this VM's",
				     fd, vcpu->id);
	return 0;
}

static int kvm_vcpu_adopt(struct vcpureq_vcpu *vcpu, int fd,
			  struct kvm_run *run, size_t run_size)
{
	int r;

	if (fd < 0)
		return vcpureq__err(-EINVAL, "vcpu_fd is negative");
	r = check_vcpu_fd(vcpu, fd);
	if (r)
		return r;
	if (run && run_size < sizeof(struct kvm_run))
		return vcpureq__err(-EINVAL, "run_size is below sizeof(struct kvm_run)");
	vcpu->fd = fd;
	vcpu->lapic_in_kernel =
		vcpureq__kvm_arch_irqchip_in_kernel(vcpu->vm->vm_fd, fd);
	if (!run)
		return map_run(vcpu);
	vcpu->run = run;
	vcpu->run_size = run_size;
	return 0;
}

static void kvm_vcpu_release(struct vcpureq_vcpu *vcpu)
{
	if (vcpu->own_run && vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->own_fd && vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
	vcpu->own_run = vcpu->own_fd = false;
}

/* Only this thread and the kernel (when KVM_RUN starts) read it; the kick
 * handler may write it on this thread. */
static void set_immediate_exit(struct vcpureq_vcpu *vcpu, uint8_t v)
{
	__atomic_store_n(&vcpu->run->immediate_exit, v, __ATOMIC_RELAXED);
}

static void kvm_self_kick(struct vcpureq_vcpu *vcpu)
{
	set_immediate_exit(vcpu, 1);
	atomic_store_explicit(&vcpu->kicked, 1, memory_order_relaxed);
}

/* ---- SIGMASK ---- */

static int sigmask_bind(struct vcpureq_vcpu *vcpu)
{
	/* The kernel's sigset for KVM_SET_SIGNAL_MASK is 8 bytes on the
	 * 64-bit architectures KVM runs on (_NSIG / 8).  KVM_RUN runs with
	 * the thread's own mask minus the kick. */
	union {
		struct kvm_signal_mask m;
		unsigned char buf[sizeof(struct kvm_signal_mask) + 8];
	} km;
	sigset_t guest = vcpu->saved_mask;

	sigdelset(&guest, vcpu->vm->kick_signal);
	km.m.len = 8;
	memcpy(km.buf + sizeof(struct kvm_signal_mask), &guest, 8);
	if (ioctl(vcpu->fd, KVM_SET_SIGNAL_MASK, &km.m) < 0)
		return vcpureq__errf(-errno, "KVM_SET_SIGNAL_MASK: %s",
				     strerror(errno));
	return 0;
}

static void sigmask_unbind(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu; /* the next bind sets the mask again */
}

static void sigmask_prepare_entry(struct vcpureq_vcpu *vcpu)
{
	set_immediate_exit(vcpu, 0);
	atomic_store_explicit(&vcpu->kicked, 0, memory_order_relaxed);
	if (vcpu->drain_pending) {
		vcpu->drain_pending = false;
		/* Left pending, the stale signal would make every later
		 * KVM_RUN return -EINTR at once (a spurious exit each). */
		vcpureq__signal_drain(vcpu->vm->kick_signal, false);
	}
}

static void sigmask_stale_kick(struct vcpureq_vcpu *vcpu)
{
	vcpu->drain_pending = true;
}

/* ---- IMMEDIATE_EXIT ---- */

static int ie_bind(struct vcpureq_vcpu *vcpu)
{
	sigset_t kick;

	vcpureq__immediate_exit = &vcpu->run->immediate_exit;
	/* The handler may run from the unblock on: the pointer first (the
	 * call is a compiler barrier; the CPU keeps program order with a
	 * handler on its own thread). */
	atomic_signal_fence(memory_order_seq_cst);
	sigemptyset(&kick);
	sigaddset(&kick, vcpu->vm->kick_signal);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	return 0;
}

static void ie_unbind(struct vcpureq_vcpu *vcpu)
{
	(void)vcpu;
	/* The signal is blocked again (vcpu_thread.c): no handler can run. */
	vcpureq__immediate_exit = NULL;
}

static void ie_prepare_entry(struct vcpureq_vcpu *vcpu)
{
	/* A kick handled since the last entry (the handler set both) has
	 * done its job; vcpureq__enter_guest_mode() fences these clears
	 * before the publish. */
	set_immediate_exit(vcpu, 0);
	atomic_store_explicit(&vcpu->kicked, 0, memory_order_relaxed);
}

/* ---- common ---- */

static int kvm_complete_io(struct vcpureq_vcpu *vcpu)
{
	int r;

	set_immediate_exit(vcpu, 1);
	r = ioctl(vcpu->fd, KVM_RUN, 0);
	set_immediate_exit(vcpu, 0);
	vcpu->io_pending = false;
	if (r < 0 && errno != EINTR)
		return vcpureq__errf(-errno, "KVM_RUN (completing I/O): %s",
				     strerror(errno));
	/* A kick may have been pending too; it has done its job. */
	if (vcpu->ops->stale_kick)
		vcpu->ops->stale_kick(vcpu);
	return 0;
}

/* The mailbox's delivery, after the final check: the architecture's
 * (kvm_arch.h). */
static void kvm_inject(struct vcpureq_vcpu *vcpu)
{
	vcpureq__kvm_arch_inject(vcpu);
}

static int kvm_run_guest(struct vcpureq_vcpu *vcpu)
{
	return ioctl(vcpu->fd, KVM_RUN, 0) < 0 ? -errno : 0;
}

/*
 * Whether an EINTR with the mode still IN_GUEST (no kicker won the CAS for
 * this instance) was a kick of ours nonetheless: the signal of an earlier
 * instance that arrived late.  SIGMASK: it is still pending (one
 * rt_sigpending, on this rare path only).  IMMEDIATE_EXIT: the handler has
 * run (the kernel ran it on the way out of KVM_RUN) and set kicked.
 */
static bool stale_kick_explains(struct vcpureq_vcpu *vcpu)
{
	if (vcpu->ops->kick == VCPUREQ_KICK_SIGMASK)
		return vcpureq__signal_pending(vcpu->vm->kick_signal);
	return atomic_load_explicit(&vcpu->kicked, memory_order_relaxed);
}

static int kvm_classify_exit(struct vcpureq_vcpu *vcpu, int ret, int left)
{
	vcpu->io_pending = false;
	if (ret == -EINTR) {
		if (left == VCPUREQ_EXITING_GUEST_MODE ||
		    stale_kick_explains(vcpu)) {
			if (vcpu->ops->stale_kick)
				vcpu->ops->stale_kick(vcpu);
			return VCPUREQ__EXIT_KICKED;
		}
		return VCPUREQ__EXIT_FOREIGN;
	}
	if (ret == -EAGAIN)
		return VCPUREQ__EXIT_AGAIN;
	if (ret < 0)
		return vcpureq__errf(ret, "KVM_RUN: %s", strerror(-ret));
	if (vcpureq__kvm_arch_own_exit(vcpu))
		return VCPUREQ__EXIT_AGAIN; /* ours: inject on re-entry */
	vcpu->io_pending =
		vcpureq__kvm_arch_needs_completion(vcpu->run->exit_reason);
	return VCPUREQ__EXIT_GUEST;
}

/* A parked vCPU: what its architecture tells the guest (x86:
 * KVM_KVMCLOCK_CTRL). */
static void kvm_on_park(struct vcpureq_vcpu *vcpu)
{
	vcpureq__kvm_arch_on_park(vcpu);
}

const struct vcpureq__backend vcpureq__backend_kvm_sigmask = {
	.name = "kvm (KVM_SET_SIGNAL_MASK)",
	.kick = VCPUREQ_KICK_SIGMASK,
	.vm_open = kvm_vm_open,
	.vm_close = kvm_vm_close,
	.vcpu_create = kvm_vcpu_create,
	.vcpu_adopt = kvm_vcpu_adopt,
	.vcpu_release = kvm_vcpu_release,
	.bind = sigmask_bind,
	.unbind = sigmask_unbind,
	.prepare_entry = sigmask_prepare_entry,
	.stale_kick = sigmask_stale_kick,
	.inject = kvm_inject,
	.run_guest = kvm_run_guest,
	.classify_exit = kvm_classify_exit,
	.self_kick = kvm_self_kick,
	.complete_io = kvm_complete_io,
	.on_park = kvm_on_park,
};

const struct vcpureq__backend vcpureq__backend_kvm_immediate_exit = {
	.name = "kvm (immediate_exit)",
	.kick = VCPUREQ_KICK_IMMEDIATE_EXIT,
	.vm_open = kvm_vm_open,
	.vm_close = kvm_vm_close,
	.vcpu_create = kvm_vcpu_create,
	.vcpu_adopt = kvm_vcpu_adopt,
	.vcpu_release = kvm_vcpu_release,
	.bind = ie_bind,
	.unbind = ie_unbind,
	.prepare_entry = ie_prepare_entry,
	.stale_kick = NULL, /* the handler took it */
	.inject = kvm_inject,
	.run_guest = kvm_run_guest,
	.classify_exit = kvm_classify_exit,
	.self_kick = kvm_self_kick,
	.complete_io = kvm_complete_io,
	.on_park = kvm_on_park,
};

int vcpureq_vm_kvm_fd(const struct vcpureq_vm *vm)
{
	int r = vcpureq__check_vm(vm);

	if (r)
		return r;
	if (vm->opts.backend != VCPUREQ_BACKEND_KVM)
		return vcpureq__err(-ENOTSUP, "not a KVM-backend VM");
	return vm->vm_fd;
}

int vcpureq_vcpu_kvm_fd(const struct vcpureq_vcpu *vcpu)
{
	int r = vcpureq__check_vcpu(vcpu);

	if (r)
		return r;
	if (!vcpu->run)
		return vcpureq__err(-ENOTSUP, "not a KVM-backend vCPU");
	return vcpu->fd;
}

struct kvm_run *vcpureq_vcpu_kvm_run(const struct vcpureq_vcpu *vcpu)
{
	return vcpureq__check_vcpu(vcpu) ? NULL : vcpu->run;
}

bool vcpureq_vcpu_lapic_in_kernel(const struct vcpureq_vcpu *vcpu)
{
	return vcpu && vcpu->lapic_in_kernel;
}
