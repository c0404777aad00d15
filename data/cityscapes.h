// Cityscapes labelIds → trainIds: the 19-class mapping of cityscapesScripts (helpers/labels.py,
// ignoreInEval ids → 255) and the walk over gtFine/<split>/<city>/*_gtFine_labelIds.png that
// writes *_gtFine_labelTrainIds.png beside each, for u2pl_cityscapes_trainids.
// Covered by tests/test_dataset.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace u2pl {

// The trainId of a labelId (0..18), or 255 for ids that are not evaluated.
uint8_t cityscapes_train_id(int label_id);

// <root>/gtFine/<split>/<city>/*_gtFine_labelIds.png, sorted; errors when the folder is missing
// or holds no such file.
std::vector<std::string> find_cityscapes_label_ids(const std::string& root, const std::string& split);

// ..._gtFine_labelIds.png → ..._gtFine_labelTrainIds.png
std::string cityscapes_train_ids_path(const std::string& label_ids_path);

// Converts one single-channel labelIds PNG into a trainIds PNG (written atomically).
void convert_cityscapes_label(const std::string& label_ids_path, const std::string& train_ids_path);

// Converts every labelIds file of the split; existing trainIds files are kept unless `overwrite`.
// progress(done, total, file) is called after each file. Returns the number of files written.
size_t convert_cityscapes_split(const std::string& root, const std::string& split, bool overwrite,
                                const std::function<void(size_t, size_t, const std::string&)>& progress);

}  // namespace u2pl
