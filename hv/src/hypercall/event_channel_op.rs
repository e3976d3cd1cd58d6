//! `event_channel_op` (32): 2-level event channels ([`crate::xen::evtchn`]
//! holds the state): alloc_unbound, bind_interdomain, bind_virq (global
//! VIRQs such as `VIRQ_DOM_EXC` and `VIRQ_CONSOLE` on vCPU 0, movable with
//! bind_vcpu; hv raises them through [`super::virq`]), bind_ipi, send,
//! unmask, close, status, bind_vcpu; and the FIFO ABI as Xen 4.20 offers it
//! ([`crate::xen::evtchn_fifo`]): `init_control` (a domain switches at its
//! first), `expand_array`, `set_priority`. Linux uses FIFO when
//! `init_control` succeeds (drivers/xen/events/events_base.c `xen_init_IRQ`:
//! "xen:events: Using FIFO-based ABI"). `reset` is -ENOSYS.

use memops::TableMem;

use pv_tlb::{PhysAddr, PAGE_SIZE};

use super::{le16, le32, le64, Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::world::Doms;
use crate::xen::evtchn::{self, EvtchnCtx, HvPort, SendEffect};
use crate::xen::{evtchn_fifo, Errno};

/// `event_channel_op(...)` from the caller's registers.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    Reply::ret(event_channel_op(super::low32(a[0]), a[1], ctx))
}

/// Handle `EVTCHNOP_<cmd>` with its struct at `arg` (a VA of the caller).
///
/// # Errors
/// Xen's errno for each sub-op.
pub fn event_channel_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    ctx: &mut Ctx<'_, M>,
) -> Result<u64, Errno> {
    use evtchn::op;
    let caller = ctx.caller;
    match cmd {
        op::ALLOC_UNBOUND => {
            let b = ctx.read::<8>(GuestVa(arg))?;
            let dom = ctx.self_or(le16(&b, 0))?;
            let port =
                evtchn::alloc_unbound(&mut Doms(&mut ctx.world.domains), caller, dom, le16(&b, 2))?;
            ctx.write(GuestVa(arg + 4), &port.to_le_bytes())?;
            Ok(0)
        }
        op::BIND_INTERDOMAIN => {
            let b = ctx.read::<12>(GuestVa(arg))?;
            let port = evtchn::bind_interdomain(
                &mut Doms(&mut ctx.world.domains),
                caller,
                le16(&b, 0),
                le32(&b, 4),
            )?;
            ctx.write(GuestVa(arg + 8), &port.to_le_bytes())?;
            Ok(0)
        }
        op::BIND_VIRQ => {
            let b = ctx.read::<12>(GuestVa(arg))?;
            let port = ctx.me()?.xen.evtchn.bind_virq(le32(&b, 0), le32(&b, 4))?;
            ctx.write(GuestVa(arg + 8), &port.to_le_bytes())?;
            Ok(0)
        }
        op::BIND_IPI => {
            let b = ctx.read::<8>(GuestVa(arg))?;
            let vcpu = le32(&b, 0);
            let e = &mut ctx.me()?.xen.evtchn;
            if vcpu >= e.vcpus() {
                return Err(Errno::ENOENT);
            }
            let port = e.alloc(evtchn::PortState::Ipi, vcpu)?;
            ctx.write(GuestVa(arg + 4), &port.to_le_bytes())?;
            Ok(0)
        }
        op::CLOSE => {
            let b = ctx.read::<4>(GuestVa(arg))?;
            let port = le32(&b, 0);
            if ctx.me()?.xen.evtchn.port(port).map(|p| p.state)
                == Some(evtchn::PortState::Hv(HvPort::Console))
            {
                // hv's console end stays; Linux never closes it.
                return Err(Errno::EINVAL);
            }
            evtchn::close(&mut Doms(&mut ctx.world.domains), caller, port)?;
            Ok(0)
        }
        op::SEND => {
            let b = ctx.read::<4>(GuestVa(arg))?;
            let mut ectx = EvtchnCtx {
                caller,
                mem: &mut ctx.world.mem,
                irq: &mut ctx.fx.upcalls,
            };
            match evtchn::send(&mut Doms(&mut ctx.world.domains), &mut ectx, le32(&b, 0))? {
                SendEffect::Done => {}
                SendEffect::Hv(HvPort::Console) => {
                    let d = ctx
                        .world
                        .domains
                        .iter_mut()
                        .find(|d| d.id == caller)
                        .ok_or(Errno::ESRCH)?;
                    let (xen, line) = (&mut d.xen, &mut d.console);
                    xen.console_notified(
                        caller,
                        &mut ctx.world.mem,
                        line,
                        ctx.world.sink.as_mut(),
                        &mut ctx.fx.upcalls,
                    );
                }
            }
            Ok(0)
        }
        op::STATUS => {
            let b = ctx.read::<8>(GuestVa(arg))?;
            let dom = ctx.self_or(le16(&b, 0))?;
            let s = evtchn::status(&mut Doms(&mut ctx.world.domains), dom, le32(&b, 4))?;
            let mut out = [0u8; 16];
            out[0..4].copy_from_slice(&s.status.to_le_bytes());
            out[4..8].copy_from_slice(&s.vcpu.to_le_bytes());
            if s.status == evtchn::stat::UNBOUND || s.status == evtchn::stat::INTERDOMAIN {
                out[8..10].copy_from_slice(&(s.u0 as u16).to_le_bytes());
            } else {
                out[8..12].copy_from_slice(&s.u0.to_le_bytes());
            }
            out[12..16].copy_from_slice(&s.u1.to_le_bytes());
            ctx.write(GuestVa(arg + 8), &out)?;
            Ok(0)
        }
        op::BIND_VCPU => {
            let b = ctx.read::<8>(GuestVa(arg))?;
            ctx.me()?.xen.evtchn.bind_vcpu(le32(&b, 0), le32(&b, 4))?;
            Ok(0)
        }
        op::UNMASK => {
            let b = ctx.read::<4>(GuestVa(arg))?;
            let d = ctx
                .world
                .domains
                .iter_mut()
                .find(|d| d.id == caller)
                .ok_or(Errno::ESRCH)?;
            d.xen
                .evtchn
                .unmask(caller, le32(&b, 0), &mut ctx.world.mem, &mut ctx.fx.upcalls)?;
            Ok(0)
        }
        op::INIT_CONTROL => {
            // Xen 4.20's order (do_event_channel_op, evtchn_fifo_init_control,
            // map_control_block, map_guest_page): copy in (-EFAULT); a vCPU
            // that does not exist (-ENOENT); an offset that would cross the
            // page or is not 8-byte aligned (-EINVAL); the domain's first
            // block: its state (-ENOMEM); a vCPU that has a block (-EINVAL);
            // a gfn that is not the caller's writable RAM (-EINVAL); copy out
            // `link_bits` (-EFAULT).
            let mut b = ctx.read::<24>(GuestVa(arg))?;
            let gfn = le64(&b, 0);
            let (off, vcpu) = (u64::from(le32(&b, 8)), le32(&b, 12));
            if vcpu >= ctx.me()?.xen.evtchn.vcpus() {
                return Err(Errno::ENOENT);
            }
            if off > PAGE_SIZE - evtchn_fifo::CONTROL_BLOCK_SIZE || off % 8 != 0 {
                return Err(Errno::EINVAL);
            }
            if ctx.me()?.xen.evtchn.fifo_control_registered(vcpu) {
                return Err(Errno::EINVAL);
            }
            // The page is pinned for the domain's lifetime (map_guest_page).
            let ipa = gfn.checked_mul(PAGE_SIZE).ok_or(Errno::EINVAL)?;
            ctx.with_pinned_page(ipa, |d, frame, mem, _| {
                d.xen
                    .evtchn
                    .init_control(vcpu, PhysAddr(frame.0 + off), mem)
            })?;
            crate::glog!(
                caller,
                Debug,
                "d{caller}v{vcpu}: FIFO event channel control block at gfn {gfn:#x}+{off:#x}"
            );
            b[16] = evtchn_fifo::LINK_BITS;
            ctx.write(GuestVa(arg), &b)?;
            Ok(0)
        }
        op::EXPAND_ARRAY => {
            // Xen: copy in (-EFAULT); a domain still on 2-level
            // (-EOPNOTSUPP); every array page in use (-ENOSPC); a gfn that
            // is not the caller's writable RAM (-EINVAL).
            let b = ctx.read::<8>(GuestVa(arg))?;
            ctx.me()?.xen.evtchn.can_expand()?;
            let ipa = le64(&b, 0).checked_mul(PAGE_SIZE).ok_or(Errno::EINVAL)?;
            ctx.with_pinned_page(ipa, |d, frame, mem, fx| {
                d.xen
                    .evtchn
                    .expand_array(caller, frame, mem, &mut fx.upcalls)
            })?;
            Ok(0)
        }
        op::SET_PRIORITY => {
            let b = ctx.read::<8>(GuestVa(arg))?;
            ctx.me()?
                .xen
                .evtchn
                .set_priority(le32(&b, 0), le32(&b, 4))?;
            Ok(0)
        }
        other => {
            crate::glog!(
                caller,
                Debug,
                "d{caller}: EVTCHNOP {other} not implemented: -ENOSYS"
            );
            Err(Errno::ENOSYS)
        }
    }
}
