// SPDX-License-Identifier: Apache-2.0
//! TCP as the kernel numbers it: connection states and address families (the constants
//! come from src/bpf/include/net.h through the ABI skeleton).

use std::fmt;

use crate::model::abi::types::{tcp_family, tcp_state_nr as S};

/// A TCP state number as the tracepoint reports it (include/net/tcp_states.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpState(pub u8);

impl TcpState {
    pub const ESTABLISHED: TcpState = TcpState(S::TCPS_ESTABLISHED.0 as u8);
    pub const SYN_SENT: TcpState = TcpState(S::TCPS_SYN_SENT.0 as u8);
    pub const CLOSE: TcpState = TcpState(S::TCPS_CLOSE.0 as u8);
    pub const LISTEN: TcpState = TcpState(S::TCPS_LISTEN.0 as u8);

    /// The kernel's name without the `TCP_` prefix.
    pub fn name(self) -> &'static str {
        match S(u32::from(self.0)) {
            S::TCPS_ESTABLISHED => "ESTABLISHED",
            S::TCPS_SYN_SENT => "SYN_SENT",
            S::TCPS_SYN_RECV => "SYN_RECV",
            S::TCPS_FIN_WAIT1 => "FIN_WAIT1",
            S::TCPS_FIN_WAIT2 => "FIN_WAIT2",
            S::TCPS_TIME_WAIT => "TIME_WAIT",
            S::TCPS_CLOSE => "CLOSE",
            S::TCPS_CLOSE_WAIT => "CLOSE_WAIT",
            S::TCPS_LAST_ACK => "LAST_ACK",
            S::TCPS_LISTEN => "LISTEN",
            S::TCPS_CLOSING => "CLOSING",
            S::TCPS_NEW_SYN_RECV => "NEW_SYN_RECV",
            S::TCPS_BOUND_INACTIVE => "BOUND_INACTIVE",
            _ => "UNKNOWN",
        }
    }

    /// A state a connection can only be in after it was established: its move to CLOSE
    /// ends a connection (what `tcp --life` reports).
    pub fn after_established(self) -> bool {
        matches!(
            S(u32::from(self.0)),
            S::TCPS_ESTABLISHED
                | S::TCPS_FIN_WAIT1
                | S::TCPS_FIN_WAIT2
                | S::TCPS_TIME_WAIT
                | S::TCPS_CLOSE_WAIT
                | S::TCPS_LAST_ACK
                | S::TCPS_CLOSING
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// 4 or 6, as JSON reports it.
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// From the kernel's address family number (AF_INET, AF_INET6).
    pub fn from_af(af: u16) -> Option<Family> {
        match tcp_family(u32::from(af)) {
            tcp_family::TCP_AF_INET => Some(Family::V4),
            tcp_family::TCP_AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    /// The kernel's address family number.
    pub fn af(self) -> u16 {
        match self {
            Family::V4 => tcp_family::TCP_AF_INET.0 as u16,
            Family::V6 => tcp_family::TCP_AF_INET6.0 as u16,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IPv{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_families() {
        assert_eq!(TcpState(1).name(), "ESTABLISHED");
        assert_eq!(TcpState(12).name(), "NEW_SYN_RECV");
        assert_eq!(TcpState(99).name(), "UNKNOWN");
        assert!(TcpState(5).after_established());
        assert!(!TcpState(2).after_established());
        assert_eq!(Family::from_af(10), Some(Family::V6));
        assert_eq!(Family::V4.af(), 2);
        assert_eq!(Family::from_af(1), None);
    }
}
