/*
 * vcpureq_tso.pml -- the two store-buffering (Dekker) pairs of vcpureq and
 * the exit-epoch acknowledgement under x86-TSO: every thread has a FIFO
 * store buffer; a plain store goes into it, a drainer process moves the
 * oldest entry to memory at any time, a load sees the thread's own newest
 * buffered store to that location (store forwarding) or memory, a full
 * fence waits until the buffer is empty, and a locked RMW (xchg, cmpxchg,
 * lock add/or/and) empties the buffer first and then acts on memory.
 *
 *   vCPU (run.c)                      requester (make_request.c, kick.c)
 *   mode = IN_GUEST   (plain store)   requests |= bit   (store, see below)
 *   [V] full fence                    hint = 1          (plain store)
 *   load requests / mode              [R] full fence
 *                                     load sleep_state, epoch, mode; CAS
 *   sleeper (block.c)
 *   sleep_state = SLEEPING (plain)
 *   [S] full fence
 *   load hint, UNBLOCK
 *
 * The request OR is modelled as a plain, buffered store (the C code's
 * atomic_fetch_or(release) is a plain store's worth of ordering in C11 and
 * on ARM64/POWER).  -DX86_LOCKED_OR models what x86 really emits for it, a
 * lock-prefixed OR, which drains the buffer by itself.
 *
 * One vCPU (run and block), NR requesters, each making RB requests chosen
 * from: a generic request with flags none / WAIT / NO_WAKEUP / both,
 * OUTSIDE_GUEST_MODE (NO_ACTION|WAIT|NO_WAKEUP), UNBLOCK.
 *
 * Properties (ghost bits as in vcpureq.pml):
 *   ok_a   (a) at guest entry: if a request whose requester has completed
 *              its kick is pending (in memory or still in the requester's
 *              store buffer), a kick is pending or the mode is EXITING
 *   ok_a2  (a) once every requester is done and every buffer drained, no
 *              request is pending in a guest without a pending kick
 *   ok_b   (b) when a WAIT request returns, every instance that was in
 *              progress (mode visible in memory) at its fence [R] has ended
 *   ok_d   (d) once every requester is done and every buffer drained, the
 *              sleeper is not asleep with a waking request pending
 *   a hang (a WAIT requester that never returns): "invalid end state"
 *
 * Variants:
 *   NO_VCPU_FENCE     remove [V]           -> (a) fails
 *   NO_REQ_FENCE      remove [R]           -> (a) fails
 *   NO_SLEEP_FENCE    remove [S]           -> (d) fails (lost wake-up)
 *   SNAP_AFTER_CAS    epoch snapshot after the mode read / CAS -> hang
 *   SNAP_BEFORE_FENCE epoch snapshot before [R] (docs/design.md's first
 *                     order) -> (b) fails, unless X86_LOCKED_OR
 *   X86_LOCKED_OR     the request OR is a locked RMW (what x86 executes)
 */

#ifndef NR
#define NR 1
#endif
#ifndef VB
#define VB 3
#endif
#ifndef RB
#define RB 2
#endif
/* request kinds (sum): 1 generic with flags none/WAIT/NO_WAKEUP/both,
 * 2 OUTSIDE_GUEST_MODE, 4 UNBLOCK, 8 generic with NO_WAKEUP only
 * (NO_WAKEUP and WAIT|NO_WAKEUP: the pure Dekker pair, no wake path) */
#ifndef KINDS
#define KINDS 7
#endif

#define OUT     0
#define IN      1
#define EXITING 2

#define B_GEN  1
#define B_UNBL 4

#define F_NOWAKE 1
#define F_WAIT   2
#define F_NOACT  4

#define AWAKE    0
#define SLEEPING 1
#define WOKEN    2

/* ---- memory ---- */
byte req;
byte mode;
byte epoch;
byte ackw;
bit  hint;
byte sleep;
bit  kick;

/* ---- futex queues ---- */
bit  sq;            /* the vCPU sleeps on sleep_state */
bit  eq[NR];        /* requester r sleeps on exit_epoch */

/* ---- store buffers: thread 0 is the vCPU, thread 1 + r requester r ---- */
#define NT (NR + 1)
#define SBN 3
#define X_MODE  1
#define X_SLEEP 2
#define X_REQOR 3
#define X_HINT  4
byte sbx[NT * SBN]; /* location of each entry (0: free) */
byte sbv[NT * SBN]; /* value (for X_REQOR: the bits to OR) */
byte sbc[NT];       /* entries in use */

/* ---- ghosts ---- */
byte rp[NR];        /* requester r's bit: 0 none/consumed, 1 buffered, 2 in memory */
byte rb[NR];        /* ... which bit */
bit  rdone[NR];     /* requester r has completed its kick */
bit  watch[NR];     /* (b) the instance in progress at r's [R] is not over */

bit  in_guest;
byte ndone;

bit ok_a = 1, ok_a2 = 1, ok_b = 1, ok_d = 1;

/* append a store to thread p's buffer */
inline sb_push(p, x, v)
{
	assert(sbc[p] < SBN);
	sbx[p * SBN + sbc[p]] = x;
	sbv[p * SBN + sbc[p]] = v;
	sbc[p]++
}

/* the vCPU's load of the mode: its newest buffered store, else memory */
inline load_mode(m, k)
{
	m = mode;
	for (k : 0 .. SBN - 1) {
		if
		:: k < sbc[0] && sbx[k] == X_MODE -> m = sbv[k]
		:: else
		fi
	};
	k = 0
}

inline load_sleep(m, k)
{
	m = sleep;
	for (k : 0 .. SBN - 1) {
		if
		:: k < sbc[0] && sbx[k] == X_SLEEP -> m = sbv[k]
		:: else
		fi
	};
	k = 0
}

#define ALL_DRAINED (sbc[0] == 0 && ALLREQ_DRAINED)
#if NR == 1
#define ALLREQ_DRAINED (sbc[1] == 0)
#elif NR == 2
#define ALLREQ_DRAINED (sbc[1] == 0 && sbc[2] == 0)
#else
#define ALLREQ_DRAINED (sbc[1] == 0 && sbc[2] == 0 && sbc[3] == 0)
#endif

/* the memory subsystem: the oldest entry of a buffer reaches memory */
proctype drainer(byte p)
{
	byte k, x, v;
end:
	do
	:: d_step { sbc[p] > 0 ->
		x = sbx[p * SBN]; v = sbv[p * SBN];
		for (k : 1 .. SBN - 1) {
			sbx[p * SBN + k - 1] = sbx[p * SBN + k];
			sbv[p * SBN + k - 1] = sbv[p * SBN + k]
		};
		sbx[p * SBN + SBN - 1] = 0; sbv[p * SBN + SBN - 1] = 0;
		sbc[p]--;
		if
		:: x == X_MODE -> mode = v;
			/* (b): OUTSIDE is visible, the instance is over */
			if
			:: v == OUT -> for (k : 0 .. NR - 1) { watch[k] = 0 }
			:: else
			fi
		:: x == X_SLEEP -> sleep = v
		:: x == X_REQOR -> req = req | v;
			/* the ghost follows the newest OR of requester p - 1 */
			x = 0;
			for (k : 0 .. SBN - 1) {
				if
				:: sbx[p * SBN + k] == X_REQOR -> x = 1
				:: else
				fi
			};
			if
			:: p > 0 && rp[p - 1] == 1 && !x -> rp[p - 1] = 2
			:: else
			fi
		:: x == X_HINT -> hint = 1
		fi;
		k = 0; x = 0; v = 0 }
	od
}

/* the vCPU consumed bit b (a locked RMW: the buffer is empty) */
inline vclear(b, k)
{
	req = req & ~b;
	for (k : 0 .. NR - 1) {
		if
		:: rp[k] == 2 && rb[k] == b -> rp[k] = 0
		:: else
		fi
	};
	k = 0
}

/* exit_guest_mode(), first half: the plain store of OUTSIDE */
inline exit_store(k)
{
	sb_push(0, X_MODE, OUT)
}

/* second half: lock xadd on the epoch (drains the buffer first), [E],
 * ack_waiters, futex_wake */
inline exit_bump(k)
{
	epoch++;
	if
	:: ackw > 0 -> for (k : 0 .. NR - 1) { eq[k] = 0 }; k = 0
	:: else
	fi
}

proctype vcpu()
{
	byte budget = VB;
	byte why, m, k;

loop:
	if
	:: budget > 0 -> budget--; goto l_run
#ifndef NO_BLOCK
	:: budget > 0 -> budget--; goto l_block
#endif
	:: budget == 0 -> goto quit
	fi;

l_run:
	/* process_requests(): loads of the hint and the requests; only if
	 * something is set, the hint xchg and clear_request(UNBLOCK) /
	 * check_request (locked RMWs, which drain the buffer first) */
	if
	:: d_step { !hint && req == 0 -> skip }
	:: atomic { sbc[0] == 0 && (hint || req != 0) ->
		hint = 0;
		if
		:: req & B_UNBL -> vclear(B_UNBL, k)
		:: else
		fi;
		if
		:: req & B_GEN -> vclear(B_GEN, k)
		:: else
		fi }
	fi;
	/* publish IN_GUEST_MODE: a plain store */
	atomic { load_mode(m, k); assert(m == OUT); sb_push(0, X_MODE, IN); m = 0 };
#ifndef NO_VCPU_FENCE
	(sbc[0] == 0);   /* [V] */
#endif
	/* the final check: the mode (own store forwarded), the requests */
	atomic {
		load_mode(m, k);
		if
		:: m != IN || req != 0 -> why = 3
		:: else ->
			why = 0;
			for (k : 0 .. NR - 1) {
				ok_a = ok_a && !(rp[k] != 0 && rdone[k])
			};
			ok_a = ok_a || kick || mode == EXITING;
			assert(ok_a);
			k = 0;
			in_guest = 1
		fi;
		m = 0
	};
end_guest:
	if
	:: why == 3 -> why = 0
	:: d_step { why == 0 && kick -> kick = 0; in_guest = 0 }   /* -EINTR */
	:: d_step { why == 0 && budget > 0 -> in_guest = 0 }       /* exit */
	:: d_step { why == 0 && ndone == NR && ALL_DRAINED && req != 0 && !kick ->
		ok_a2 = 0; assert(ok_a2) };
		goto quit
	fi;
	atomic { exit_store(k) };
	atomic { sbc[0] == 0 -> exit_bump(k) };
	goto loop;

l_block:
	/* the first check_block(): loads; a locked RMW only if something is set */
	if
	:: d_step { !(req & B_UNBL) && !hint -> why = 0 }
	:: d_step { sbc[0] == 0 && ((req & B_UNBL) || hint) ->
		if
		:: req & B_UNBL -> vclear(B_UNBL, k)
		:: else
		fi;
		hint = 0;
		why = 1 }
	fi;
	if
	:: why -> why = 0; goto l_run
	:: else
	fi;
bloop:
	atomic { sb_push(0, X_SLEEP, SLEEPING) };
#ifndef NO_SLEEP_FENCE
	(sbc[0] == 0);   /* [S] */
#endif
	if
	:: d_step { !(req & B_UNBL) && !hint -> why = 0 }
	:: d_step { sbc[0] == 0 && ((req & B_UNBL) || hint) ->
		if
		:: req & B_UNBL -> vclear(B_UNBL, k)
		:: else
		fi;
		hint = 0;
		why = 1 }
	fi;
	if
	:: why -> goto bdone
	/* futex_wait(&sleep_state, SLEEPING): the kernel's load forwards from
	 * this CPU's store buffer */
	:: d_step { why == 0 -> load_sleep(m, k);
		if
		:: m == SLEEPING -> sq = 1
		:: else
		fi;
		m = 0 };
end_sleep:
		if
		:: (sq == 0)
		:: d_step { sq && ndone == NR && ALL_DRAINED &&
			    (hint || (req & B_UNBL)) -> ok_d = 0; assert(ok_d) };
			goto quit
		fi;
		goto bloop
	fi;
bdone:
	why = 0;
	atomic { sb_push(0, X_SLEEP, AWAKE) };
	goto l_run;
quit:
	skip
}

#define P_OR    1
#define P_HINT  2
#define P_FENCE 3
#define P_SLEEP 4
#define P_CASS  5
#define P_FWAKE 6
#define P_SNAP  7
#define P_MODE  8
#define P_CASM  9
#define P_SIG   10
#define P_LATE  11
#define P_WAIT1 12
#define P_WAIT2 13
#define P_WAIT3 14
#define P_DONE  15

proctype requester(byte r)
{
	byte n = RB;
	byte p = r + 1;
	byte b, fl, ph, s, old, snap;
	bit wt;

	do
	:: ph == 0 && n == 0 -> break
	:: atomic { ph == 0 && n > 0 ->
		n--;
		if
		:: (KINDS & 1) -> b = B_GEN; fl = 0
		:: (KINDS & 1) -> b = B_GEN; fl = F_WAIT
		:: (KINDS & 9) -> b = B_GEN; fl = F_NOWAKE
		:: (KINDS & 9) -> b = B_GEN; fl = F_WAIT | F_NOWAKE
		:: (KINDS & 2) -> b = 0;     fl = F_NOACT | F_WAIT | F_NOWAKE
		:: (KINDS & 4) -> b = B_UNBL; fl = 0
		fi;
		rdone[r] = 0;
		ph = (fl & F_NOACT -> P_FENCE : P_OR) }
#ifdef X86_LOCKED_OR
	:: d_step { ph == P_OR && sbc[p] == 0 ->
		req = req | b;
		if
		:: b -> rp[r] = 2; rb[r] = b
		:: else
		fi;
		ph = (fl & F_NOWAKE -> P_FENCE : P_HINT) }
#else
	:: d_step { ph == P_OR ->
		sb_push(p, X_REQOR, b);
		if
		:: b -> rp[r] = 1; rb[r] = b
		:: else
		fi;
		ph = (fl & F_NOWAKE -> P_FENCE : P_HINT) }
#endif
	:: d_step { ph == P_HINT -> sb_push(p, X_HINT, 1); ph = P_FENCE }
	/* [R]; the ghost for (b): the instance now visible in memory */
#ifdef SNAP_BEFORE_FENCE
	:: d_step { ph == P_FENCE && !wt -> snap = epoch; wt = 1 }
#ifdef NO_REQ_FENCE
	:: d_step { ph == P_FENCE && wt ->
#else
	:: d_step { ph == P_FENCE && wt && sbc[p] == 0 ->
#endif
#else
#ifdef NO_REQ_FENCE
	:: d_step { ph == P_FENCE ->
#else
	:: d_step { ph == P_FENCE && sbc[p] == 0 ->
#endif
#endif
		watch[r] = ((fl & F_WAIT) && mode != OUT);
		ph = (fl & F_NOWAKE -> P_SNAP : P_SLEEP) }
	:: d_step { ph == P_SLEEP ->
		s = sleep;
		ph = (s == WOKEN -> P_DONE : (s == SLEEPING -> P_CASS : P_SNAP));
		rdone[r] = (ph == P_DONE) }
	:: d_step { ph == P_CASS && sbc[p] == 0 ->    /* lock cmpxchg */
		if
		:: sleep == SLEEPING -> sleep = WOKEN; ph = P_FWAKE
		:: else -> s = sleep; ph = (s == WOKEN -> P_DONE : P_SNAP)
		fi;
		rdone[r] = (ph == P_DONE) }
	:: d_step { ph == P_FWAKE -> sq = 0; rdone[r] = 1; ph = P_DONE }   /* futex_wake */
#if defined(SNAP_BEFORE_FENCE) || defined(SNAP_AFTER_CAS)
	:: d_step { ph == P_SNAP -> ph = P_MODE }
#else
	:: d_step { ph == P_SNAP -> snap = epoch; ph = P_MODE }
#endif
	:: d_step { ph == P_MODE ->
		old = mode;
		ph = (old == IN -> P_CASM : P_LATE) }
	:: d_step { ph == P_CASM && sbc[p] == 0 ->    /* lock cmpxchg */
		if
		:: mode == IN -> mode = EXITING; ph = P_SIG
		:: else -> old = mode; ph = P_LATE
		fi }
	:: d_step { ph == P_SIG -> kick = 1; old = IN; ph = P_LATE }   /* tgkill */
	:: d_step { ph == P_LATE ->
#ifdef SNAP_AFTER_CAS
		snap = epoch;
#endif
		ph = ((fl & F_WAIT) && old != OUT -> P_WAIT1 : P_DONE);
		rdone[r] = 1 }
	:: d_step { ph == P_WAIT1 ->
		if
		:: epoch != snap -> ph = P_DONE
		:: else -> ph = P_WAIT2
		fi }
	:: d_step { ph == P_WAIT2 && sbc[p] == 0 ->  /* lock add; [W] */
		ackw++; ph = P_WAIT3 + 10 }
	:: d_step { ph == P_WAIT3 + 10 ->
		if
		:: epoch != snap -> ph = P_WAIT3 + 20
		:: else -> eq[r] = 1; ph = P_WAIT3   /* futex_wait */
		fi }
	:: d_step { ph == P_WAIT3 && eq[r] == 0 -> ph = P_WAIT3 + 10 }
	:: d_step { ph == P_WAIT3 + 20 && sbc[p] == 0 -> ackw--; ph = P_DONE }
	:: d_step { ph == P_DONE ->
		rdone[r] = 1;   /* (NO_ACTION with a sleeper woken, etc.) */
		if
		:: fl & F_WAIT -> ok_b = !watch[r]; assert(ok_b)
		:: else
		fi;
		watch[r] = 0;
		b = 0; fl = 0; s = 0; old = 0; snap = 0; wt = 0;
		if
		:: n == 0 -> ndone++
		:: else
		fi;
		ph = 0 }
	od
}

init
{
	byte k;
	atomic {
		run vcpu();
		run drainer(0);
		for (k : 0 .. NR - 1) { run requester(k); run drainer(k + 1) };
		k = 0
	}
}
