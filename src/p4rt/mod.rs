//! P4Runtime v1 protocol types (generated from proto/ at build time) and the small helpers every
//! P4Runtime party needs: find-by-name over a P4Info, P4Info text format, canonical byte strings
//! and object-id prefixes. A leaf module: it must not import any other part of vmdep.

/// Generated code, nested like the protobuf packages so the cross-package paths prost emits
/// (`super::super::google::rpc::Status`, `super::config::v1::P4Info`) resolve.
pub mod proto {
    pub mod p4 {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/p4.v1.rs"));
        }
        pub mod config {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/p4.config.v1.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

/// Package `google.rpc`: Status and Code.
pub use proto::google::rpc;
/// Package `p4.config.v1`: the P4Info and P4 type descriptions.
pub use proto::p4::config::v1 as config;
/// Package `p4.v1`: the P4Runtime service and its messages.
pub use proto::p4::v1;

pub mod bytestring;
pub mod ids;
pub mod index;
pub mod text;

pub use index::{LookupError, ObjectKind, P4InfoIndex, P4InfoIndexError};
pub use text::{p4info_from_text, p4info_to_text, TextFormatError};

use std::sync::LazyLock;

/// The serialized `google.protobuf.FileDescriptorSet` of every file under proto/ (and the
/// well-known types they import), as build.rs wrote it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/p4runtime_descriptor.bin"));

static DESCRIPTOR_POOL: LazyLock<prost_reflect::DescriptorPool> = LazyLock::new(|| {
    // The bytes come from protox in build.rs, from the same files the types were generated
    // from; a failure here is a build defect, caught by this module's tests.
    prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("build.rs wrote a valid descriptor set")
});

/// All P4Runtime messages as runtime descriptors, for text format and other reflection.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    &DESCRIPTOR_POOL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_pool_holds_the_p4runtime_packages() {
        let pool = descriptor_pool();
        for name in [
            "p4.v1.WriteRequest",
            "p4.v1.StreamMessageResponse",
            "p4.v1.P4Data",
            "p4.config.v1.P4Info",
            "p4.config.v1.P4TypeInfo",
            "google.rpc.Status",
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
        }
        assert!(pool.get_enum_by_name("google.rpc.Code").is_some());
        assert!(pool.get_service_by_name("p4.v1.P4Runtime").is_some());
    }
}
