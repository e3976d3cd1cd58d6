//! `multicall` (13): a batch of hypercalls (`struct multicall_entry` {u64
//! op, i64 result, u64 args[6]} = 64 bytes on arm64, public/xen.h), after
//! xen/common/multicall.c. Each entry re-enters [`super::handle`].

use memops::TableMem;

use super::{Action, Call, Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::xen::abi::nr;
use crate::xen::abi::MulticallEntry;
use crate::xen::Errno;

/// Where `result` and `args` are in an entry.
const RESULT: u64 = core::mem::offset_of!(MulticallEntry, result) as u64;
const ARGS: u64 = core::mem::offset_of!(MulticallEntry, args) as u64;

/// `multicall(call_list, nr_calls)` from the caller's registers.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    multicall(a[0], super::low32(a[1]), ctx)
}

/// Entries of a multicall run per invocation; more continue in a
/// continuation (Xen preempts a multicall whenever `hypercall_preempt_check()`
/// fires, xen/common/multicall.c).
pub const MULTICALL_BUDGET: u64 = 64;
/// `sizeof(struct multicall_entry)` on arm64.
pub const MULTICALL_ENTRY_LEN: u64 = MulticallEntry::SIZE as u64;

/// `multicall(call_list, nr_calls)`: run each entry through [`super::handle`]
/// and store its result, as Xen's `do_multicall`: every hypercall may be an
/// entry (memory_op, domctl and sysctl too: Linux batches memory_op in
/// multicalls); a nested multicall answers `-EINVAL` in its result slot. After [`MULTICALL_BUDGET`] entries, after a `SCHEDOP_yield` or
/// `SCHEDOP_block` entry (Xen: the schedule softirq makes
/// `hypercall_preempt_check()` true) the rest of the list continues in a
/// continuation (x0 = the next entry, x1 = entries left), so later entries
/// still run; an entry that itself continues (a long console write) gets its
/// updated arguments written back into its entry, which runs again first. A
/// shutdown stops the list.
pub fn multicall<M: PhysMem + TableMem>(list: u64, nr: u32, ctx: &mut Ctx<'_, M>) -> Reply {
    let nr = u64::from(nr);
    let cont = |from: u64, block: bool| Reply {
        ret: 0,
        action: Action::Continuation {
            args: [list.wrapping_add(from * MULTICALL_ENTRY_LEN), nr - from, 0],
            block,
        },
    };
    for i in 0..nr {
        if i == MULTICALL_BUDGET {
            return cont(i, false);
        }
        let at = list.wrapping_add(i * MULTICALL_ENTRY_LEN);
        let e = match ctx.read::<{ MulticallEntry::SIZE }>(GuestVa(at)) {
            Ok(b) => MulticallEntry::from_bytes(&b),
            Err(e) => return Reply::ret(Err(e)),
        };
        let mut args = [0u64; 5];
        args.copy_from_slice(&e.args[..5]);
        let op = e.op;
        let out = if op == nr::MULTICALL {
            Reply::ret(Err(Errno::EINVAL))
        } else {
            super::handle(Call { nr: op, args }, ctx)
        };
        if let Action::Continuation { args: sub, block } = out.action {
            // The entry continues: its updated arguments go back into the
            // entry (Xen copies the sub-call's continuation into the list),
            // and the multicall resumes at it.
            let mut raw = [0u8; 24];
            for (j, a) in sub.iter().enumerate() {
                raw[j * 8..j * 8 + 8].copy_from_slice(&a.to_le_bytes());
            }
            if let Err(e) = ctx.write(GuestVa(at).add(ARGS), &raw) {
                return Reply::ret(Err(e));
            }
            return cont(i, block);
        }
        if let Err(e) = ctx.write(GuestVa(at).add(RESULT), &out.ret.to_le_bytes()) {
            return Reply::ret(Err(e));
        }
        match out.action {
            Action::Continue => {}
            Action::Yield | Action::Block if i + 1 == nr => {
                return Reply {
                    ret: 0,
                    action: out.action,
                }
            }
            Action::Yield => return cont(i + 1, false),
            Action::Block => return cont(i + 1, true),
            Action::Shutdown(_) | Action::Continuation { .. } => {
                return Reply {
                    ret: 0,
                    action: out.action,
                }
            }
        }
    }
    Reply::ret(Ok(0))
}
