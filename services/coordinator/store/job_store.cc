#include "services/coordinator/store/job_store.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace tecl::coordinator {

absl::Status JobStore::WriteSync(WriteBatch batch) {
  absl::Notification written;
  absl::Status result;
  Write(std::move(batch), [&](absl::Status status) {
    result = std::move(status);
    written.Notify();
  });
  written.WaitForNotification();
  return result;
}

}  // namespace tecl::coordinator
