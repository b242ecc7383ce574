/** What a sync never uploads: editors' and systems' temporary files, and Satchel's own. */
const IGNORED_NAMES = [
  /^\.DS_Store$/, /^Thumbs\.db$/i, /^desktop\.ini$/i,
  /^\..*\.sw[a-p]$/, /~$/, /^#.*#$/, /^\.~lock\..*#$/, /^~\$/, /\.tmp$/i, /\.crdownload$/i, /\.part$/i,
  /\.partial$/i, /^\.satchel-sync$/,
];

/** Whether a path (relative, "/"-separated) is ignored: any of its names matches a rule. */
export function isIgnored(relPath: string): boolean {
  return relPath.split("/").some((name) => IGNORED_NAMES.some((rule) => rule.test(name)));
}
