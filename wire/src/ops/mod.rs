//! Operation request and reply layouts, one module per API area.
//!
//! Each request starts its payload; inline data (copy bytes, module images, names, kernel
//! parameter buffers) follows it. Handles (streams, events, modules, functions) are opaque `u64`s
//! chosen by the server; stream handle 0 is the device's legacy default stream. Device pointers
//! are the server's real device addresses.

/// Declares wire structs with the derives every layout needs.
macro_rules! wire_structs {
    ($($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? })*) => {
        $(
            $(#[$m])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, zerocopy::FromBytes, zerocopy::IntoBytes,
                     zerocopy::KnownLayout, zerocopy::Immutable, zerocopy::Unaligned)]
            pub struct $name { $($(#[$fm])* pub $f: $t,)* }
        )*
    };
}

mod array;
mod device;
mod event;
mod launch;
mod memory;
mod module;
mod stream;

pub use array::*;
pub use device::*;
pub use event::*;
pub use launch::*;
pub use memory::*;
pub use module::*;
pub use stream::*;

wire_structs! {
    /// An operation with no arguments, or a reply with no fields.
    pub struct Empty {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{split, U32, U64};
    use zerocopy::IntoBytes;

    #[test]
    fn layouts_are_pinned() {
        use core::mem::size_of;
        assert_eq!(size_of::<Empty>(), 0);
        assert_eq!(size_of::<MemAlloc>(), 16);
        assert_eq!(size_of::<MemAllocAt>(), 24);
        assert_eq!(size_of::<ArenaMap>(), 80);
        assert_eq!(size_of::<MemcpyHost>(), 40);
        assert_eq!(size_of::<MemcpyHtoD>(), 24);
        assert_eq!(size_of::<MemcpyDtoD>(), 32);
        assert_eq!(size_of::<Memset>(), 32);
        assert_eq!(size_of::<Launch>(), 56);
        assert_eq!(size_of::<ArrayCreate>(), 40);
        assert_eq!(size_of::<Memcpy2D>(), 104);
        assert_eq!(size_of::<TexObjectCreate>(), 156);
        assert_eq!(size_of::<StreamAttribute>(), 80);
        assert_eq!(size_of::<DeviceInfo>(), 256 + 16 + 8 + 4 * DEVICE_ATTRIBUTE_SLOTS);
    }

    #[test]
    fn launch_round_trips_with_params() {
        let l = Launch {
            function: U64::new(0xdead_beef_0000_0001),
            stream: U64::new(3),
            grid: [U32::new(4), U32::new(2), U32::new(1)],
            block: [U32::new(256), U32::new(1), U32::new(1)],
            shared_mem: U32::new(1024),
            params_len: U32::new(12),
            flags: U32::new(0),
            reserved: U32::new(0),
        };
        let mut buf = l.as_bytes().to_vec();
        buf.extend_from_slice(&[1u8; 12]);
        let (back, params) = split::<Launch>(&buf).unwrap();
        assert_eq!(*back, l);
        assert_eq!(params, &[1u8; 12]);
        assert_eq!(&buf[..8], &[1, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]);
    }

    #[test]
    fn short_payload_is_an_error() {
        let err = split::<MemcpyHtoD>(&[0u8; 5]).unwrap_err();
        assert_eq!((err.got, err.need, err.what), (5, 24, "MemcpyHtoD"));
    }

    #[test]
    fn every_struct_round_trips() {
        fn rt<T>(v: T)
        where
            T: zerocopy::FromBytes
                + zerocopy::IntoBytes
                + zerocopy::KnownLayout
                + zerocopy::Immutable
                + Copy
                + PartialEq
                + core::fmt::Debug,
        {
            let bytes = v.as_bytes().to_vec();
            assert_eq!(crate::read::<T>(&bytes).unwrap(), v);
        }
        rt(MemAlloc::new(1, 99));
        rt(MemAllocAt::new(0, 0x7f00_0000_1000, 4096));
        rt(ArenaMap::new(0x7f00_0000_0000, 1 << 21, "remora-arena-1-2").unwrap());
        assert_eq!(ArenaMap::new(0, 0, "remora-arena-1-2").unwrap().name_str(), Some("remora-arena-1-2"));
        assert!(ArenaMap::new(0, 0, &"x".repeat(64)).is_none());
        rt(MemFree { ptr: U64::new(5) });
        rt(MemcpyDtoH { src: U64::new(1), len: U64::new(2), stream: U64::new(3) });
        rt(MemcpyDtoD { dst: U64::new(1), src: U64::new(2), len: U64::new(3), stream: U64::new(0) });
        rt(Memset {
            dst: U64::new(8),
            count: U64::new(4),
            value: U32::new(0xff),
            element_size: U32::new(1),
            stream: U64::new(0),
        });
        rt(StreamCreate {
            device: U32::new(0),
            flags: U32::new(1),
            priority: crate::I32::new(-1),
            reserved: U32::new(0),
        });
        rt(StreamWaitEvent { stream: U64::new(1), event: U64::new(2), flags: U32::new(0), reserved: U32::new(0) });
        rt(EventCreate { device: U32::new(0), flags: U32::new(2) });
        rt(EventRecord { event: U64::new(1), stream: U64::new(0) });
        rt(ArrayCreate {
            device: U32::new(0),
            format: U32::new(0x20),
            channels: U32::new(1),
            flags: U32::new(0),
            width: U64::new(100),
            height: U64::new(60),
            depth: U64::new(0),
        });
        rt(Memcpy2D {
            src: Loc2D::host(),
            dst: Loc2D::new(LOC_ARRAY, 7, 0, 40, 5),
            width: U64::new(32),
            height: U64::new(4),
            stream: U64::new(0),
        });
        let mut tex: TexObjectCreate = zerocopy::FromZeros::new_zeroed();
        tex.res_type = U32::new(RES_PITCH2D);
        tex.border_color[2] = crate::ops::F32::new(0.25);
        rt(tex);
        rt(StreamAttribute { stream: U64::new(3), attr: U32::new(1), device: U32::new(0), value: [7; 64] });
        rt(StreamAttributeReply { value: [9; 64] });
        assert_eq!(array_element_bytes(0x20, 4), Some(16));
        assert_eq!(array_element_bytes(0x20, 3), None);
        assert_eq!(array_element_bytes(0x99, 1), None);
        rt(EventElapsed { start: U64::new(1), end: U64::new(2) });
        rt(ModuleLoad { device: U32::new(0), kind: U32::new(ImageKind::Ptx as u32), len: U64::new(10) });
        rt(ModuleGetSymbol { module: U64::new(1), name_len: U32::new(3), reserved: U32::new(0) });
        rt(ParamInfo { offset: U32::new(8), size: U32::new(4) });
        rt(FuncAttribute { function: U64::new(1), attribute: crate::I32::new(0), reserved: U32::new(0) });
        rt(DeviceAttribute { device: U32::new(0), attribute: U32::new(16) });
        rt(MemInfoReply { free: U64::new(1), total: U64::new(2) });
        rt(F32Reply { value: crate::ops::F32::new(1.5) });
    }
}
