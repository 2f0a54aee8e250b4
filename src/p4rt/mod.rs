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

/// Package `p4.v1`: the P4Runtime service and its messages.
pub use proto::p4::v1;
/// Package `p4.config.v1`: the P4Info and P4 type descriptions.
pub use proto::p4::config::v1 as config;
/// Package `google.rpc`: Status and Code.
pub use proto::google::rpc;
