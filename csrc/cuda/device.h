#pragma once
#include <string>

namespace fedrobust::cuda {
int device_count();     // 0 when no driver or no device
std::string device_error();  // why device_count() is 0 ("" when it is not), e.g. an old driver
int runtime_version();  // e.g. 13000
int driver_version();   // 0 when no driver
std::string device_name(int index);
}  // namespace fedrobust::cuda
