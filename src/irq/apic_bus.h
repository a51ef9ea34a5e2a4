// The APIC bus: which vCPUs an interrupt request goes to. KVM's kvm_irq_delivery_to_apic() with
// its fast path kvm_irq_delivery_to_apic_fast() / kvm_apic_map_get_dest_lapic() (spec §6.6).
// Intel SDM vol. 3A 11.6.1 (delivery modes, shorthands), 11.6.2 (destinations), 11.6.2.4
// (lowest priority). Routing only chooses targets; acceptance (enabled checks, IRR/TMR, NMI,
// INIT, SIPI) is the LAPIC's job.
// Not supported: real lowest-priority arbitration by TPR/PPR (KVM ignores them too: vector hashing
// or apic_arb_prio), focus processor, SMI/remote-read specifics (routed like fixed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "irq/apic_map.h"
#include "irq/apic_view.h"
#include "x86/interrupt.h"

namespace apicv::irq {

struct RouteOptions {
  bool vector_hashing = true;                    // KVM module parameter kvm.vector_hashing
  bool x2apic_broadcast_quirk_disabled = false;  // KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK
};

// Output of one routing decision. Reuse one TargetList per caller: its storage only grows, so a
// steady state of routing does not allocate.
class TargetList {
 public:
  void reserve(size_t n) { targets_.reserve(n); }
  void clear() {
    targets_.clear();
    fast_path = false;
    matched = -1;
    downgraded_to_fixed = false;
    disabled_lapic_found = false;
    examined = 0;
  }
  void push_back(int vcpu_index) { targets_.push_back(vcpu_index); }
  std::span<const int> targets() const { return targets_; }
  size_t size() const { return targets_.size(); }
  bool empty() const { return targets_.empty(); }
  int operator[](size_t i) const { return targets_[i]; }
  size_t capacity() const { return targets_.capacity(); }

  bool fast_path = false;  // answered by the ApicMap
  // KVM's return value before acceptance: -1 when the slow path found no destination, else the
  // number of targets (the fast path reports 0 for a destination nobody owns).
  int matched = -1;
  bool downgraded_to_fixed = false;   // physical 0xFF + lowest priority became fixed
  bool disabled_lapic_found = false;  // vector hashing picked an empty logical slot: dropped
  // APIC entries this decision looked at: ApicMap slots on the fast path, vCPU views on the slow
  // path (once per pass). The cost model `apicv bench route` checks: O(1) vs O(vCPUs).
  int examined = 0;

 private:
  std::vector<int> targets_;
};

// Lowest-priority semantics apply (APIC_DM_LOWEST or the MSI redirection hint).
inline bool IsLowestPriority(const x86::InterruptRequest& req) {
  return req.delivery_mode == x86::DeliveryMode::kLowestPriority || req.msi_redir_hint;
}

// KVM's kvm_apic_is_broadcast_dest(): destinations the fast path leaves to the slow path.
bool IsBroadcastDest(const x86::InterruptRequest& req, const ApicView* source, const ApicMap& map,
                     const RouteOptions& options);

// Fast path. Returns false ("not handled") for shorthands other than SELF, no/invalid map,
// broadcast destinations and a disabled logical map; `out` is then meaningless.
bool RouteFast(const x86::InterruptRequest& req, const ApicMap* map,
               std::span<const ApicView> views, const RouteOptions& options, TargetList& out);

// Slow path: every present APIC is matched with MatchDest().
void RouteSlow(const x86::InterruptRequest& req, std::span<const ApicView> views,
               const RouteOptions& options, TargetList& out);

// Full delivery decision: physical-broadcast lowest priority downgrade, fast path, slow path.
// `map` may be nullptr. `views` must be the vCPU set the map was built from. Returns out.matched.
int Route(const x86::InterruptRequest& req, const ApicMap* map, std::span<const ApicView> views,
          const RouteOptions& options, TargetList& out);

}  // namespace apicv::irq
