// Package strictyaml decodes a YAML file strictly into Go structs while
// keeping where every value was written, so that the module's file formats
// (lesson metafiles in lessonmeta, image recipes in imagebuild) report
// problems the same way: every problem of a file in one pass, each at
// LINE:COL with the field path ("endpoints[1].presentations[0].port") and
// a message that says what to do.
//
// [Unmarshal] parses the input ([Parse]) and decodes its root node into a
// struct ([Decode]) by its `yaml` field tags. It reports, as [Problem]s
// rather than a first error:
//
//   - input over [MaxSize], YAML syntax errors (at the line yaml.v3 means),
//     and a second non-empty document (a warning);
//   - values of the wrong type ("want a list, got the number 3");
//   - unknown keys, with a "did you mean" [Suggest]ion, a caller's hint
//     for keys of older formats, or the list of known keys;
//   - duplicate keys (the last one wins, as yaml.v2 had it);
//   - alias expansion far beyond the size of the file ("alias bombs"),
//     which stops decoding.
//
// Unknown and duplicate keys are warnings unless [Options].Strict is set.
// Whole numbers and booleans are read as yaml.v2 (and so Antidote) read
// them: 22.0 is 22, yes/no/on/off are booleans. `<<` merge keys are
// applied, explicit keys winning.
//
// [Positions] remembers where each field path was written, so that checks
// made after decoding point at the value they are about (or at its nearest
// enclosing field when it was left out); [Format] renders a located message
// as FILE:LINE:COL: FIELD: MESSAGE. Lines and columns are an editor's
// ([Lines]): yaml.v3 also ends a line at NEL, LINE SEPARATOR and PARAGRAPH
// SEPARATOR (YAML 1.1), and its positions are converted when a file holds
// one of those.
package strictyaml
