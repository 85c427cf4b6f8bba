/* SPDX-License-Identifier: MIT */
/*
 * Measures the two ways of making a kick interrupt KVM_RUN (docs/design.md, section 1):
 *   A: kick signal blocked in the vCPU thread, unblocked only inside KVM_RUN via
 *      KVM_SET_SIGNAL_MASK; the pending signal is taken with sigtimedwait();
 *   B: kick signal unblocked; its handler sets kvm_run->immediate_exit.
 * Prints p50/p90/p99 of tgkill -> vCPU thread back in user space and ready.
 * Usage: kick-variants 0|1 (A|B).  Raw KVM, no vcpureq: a measurement tool.
 */
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <pthread.h>
#include <unistd.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <stdatomic.h>
static int kvm, vm, vcpufd; static struct kvm_run *run; static _Atomic pid_t tid; static int variant;
static _Atomic int go; static _Atomic double sent; static _Atomic int acked;
static void h(int s){(void)s; if(variant==1) run->immediate_exit=1;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
#define N 2000
static double lat[N];
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
static void *vthr(void*a){(void)a;
  sigset_t s; sigemptyset(&s); sigaddset(&s,SIGRTMIN);
  if(variant==0){ pthread_sigmask(SIG_BLOCK,&s,NULL);
  sigset_t cur; pthread_sigmask(SIG_BLOCK,NULL,&cur); sigdelset(&cur,SIGRTMIN);
  struct kvm_signal_mask *m=malloc(sizeof(*m)+8); m->len=8; memcpy(m->sigset,&cur,8);
  ioctl(vcpufd,KVM_SET_SIGNAL_MASK,m);}
  tid=syscall(SYS_gettid);
  for(int i=0;i<N;i++){ run->immediate_exit=0; int r=ioctl(vcpufd,KVM_RUN,0);
    if(r<0 && errno==EINTR){ if(variant==0){ siginfo_t si; struct timespec z={0,0}; sigtimedwait(&s,&si,&z);} lat[i]=now()-sent; acked=i+1; }
    else { printf("exit %d reason %d\n",r,run->exit_reason); exit(1);} }
  return 0;
}
int main(int argc,char**argv){ variant=atoi(argv[1]);
  kvm=open("/dev/kvm",O_RDWR); vm=ioctl(kvm,KVM_CREATE_VM,0);
  void*mem=mmap(0,0x10000,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  unsigned char code[]={0xeb,0xfe}; memcpy((char*)mem+0x1000,code,2);
  struct kvm_userspace_memory_region r={.slot=0,.guest_phys_addr=0,.memory_size=0x10000,.userspace_addr=(unsigned long)mem};
  ioctl(vm,KVM_SET_USER_MEMORY_REGION,&r);
  vcpufd=ioctl(vm,KVM_CREATE_VCPU,0); int sz=ioctl(kvm,KVM_GET_VCPU_MMAP_SIZE,0);
  run=mmap(0,sz,PROT_READ|PROT_WRITE,MAP_SHARED,vcpufd,0);
  struct kvm_sregs sr; ioctl(vcpufd,KVM_GET_SREGS,&sr); sr.cs.base=0; sr.cs.selector=0; ioctl(vcpufd,KVM_SET_SREGS,&sr);
  struct kvm_regs rg={0}; rg.rip=0x1000; rg.rflags=2; ioctl(vcpufd,KVM_SET_REGS,&rg);
  struct sigaction sa={0}; sa.sa_handler=h; sigaction(SIGRTMIN,&sa,0);
  pthread_t t; pthread_create(&t,0,vthr,0); while(!tid);
  for(int i=0;i<N;i++){ usleep(300); sent=now(); syscall(SYS_tgkill,getpid(),tid,SIGRTMIN); while(acked<=i); }
  pthread_join(t,0); qsort(lat,N,sizeof(double),cmp);
  printf("variant %s: p50 %.1f us p90 %.1f p99 %.1f\n", variant?"B(handler+immediate_exit)":"A(SET_SIGNAL_MASK+sigtimedwait)", lat[N/2],lat[N*9/10],lat[N*99/100]);
}
