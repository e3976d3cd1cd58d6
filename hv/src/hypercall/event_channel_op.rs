//! `event_channel_op` (32): 2-level event channels ([`crate::xen::evtchn`]
//! holds the state): alloc_unbound, bind_interdomain, bind_virq (global
//! VIRQs such as `VIRQ_DOM_EXC` and `VIRQ_CONSOLE` on vCPU 0, movable with
//! bind_vcpu; hv raises them through [`super::virq`]), bind_ipi, send,
//! unmask, close, status, bind_vcpu. FIFO event channels are not offered:
//! `init_control` (and `expand_array`, `set_priority`) answer -ENOSYS, and
//! Linux then uses the 2-level ABI (drivers/xen/events/events_base.c
//! `xen_init_IRQ`: `xen_evtchn_fifo_init()` failing -> `xen_evtchn_2l_init()`),
//! where Xen 4.20 would have said yes.

use memops::TableMem;

use super::{le16, le32, Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::world::Doms;
use crate::xen::evtchn::{self, EvtchnCtx, HvPort, SendEffect};
use crate::xen::Errno;

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
                .iter()
                .find(|d| d.id == caller)
                .ok_or(Errno::ESRCH)?;
            d.xen
                .evtchn
                .unmask(caller, le32(&b, 0), &mut ctx.world.mem, &mut ctx.fx.upcalls)?;
            Ok(0)
        }
        // FIFO event channels are not offered: Linux falls back to 2-level
        // (drivers/xen/events/events_fifo.c: init_control failing).
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
