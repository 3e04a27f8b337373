# lme4/blme engine of maco-study's analysis (analysis/engines/lme4_engine.py runs it).
# Usage: Rscript --vanilla glmer.R DATA.csv MODELS.tsv OUT.csv [PRIOR_SD_INTERCEPT PRIOR_SD]
#   DATA.csv   y (0/1), participant, unit, x1..xk (the fixed-effect design)
#   MODELS.tsv name <TAB> formula <TAB> 1 to write the fixed-effect vcov, else 0
#   OUT.csv    long table: model, kind, name, name2, name3, value
#   PRIOR_SD_* when given, blme::bglmer with fixef.prior = normal(sd = c(intercept, effects))
#              and no covariance prior; else lme4::glmer.
# Binomial logit, Laplace (nAGQ = 1), lme4's default optimizers, convergence checks and vcov.
suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
if (!length(args) %in% c(3, 5)) stop("usage: glmer.R DATA.csv MODELS.tsv OUT.csv [SD_INTERCEPT SD]")
with_prior <- length(args) == 5
if (with_prior) suppressPackageStartupMessages(library(blme))
d <- read.csv(args[1], stringsAsFactors = FALSE)
d$participant <- factor(d$participant)
d$unit <- factor(d$unit)
models <- read.delim(args[2], header = FALSE, stringsAsFactors = FALSE,
                     col.names = c("name", "formula", "vcov"))

rows <- list()
add <- function(model, kind, name, value, name2 = "", name3 = "") {
  rows[[length(rows) + 1]] <<- data.frame(model = model, kind = kind, name = name,
                                          name2 = name2, name3 = name3, value = value)
}
num <- function(x) sprintf("%.17g", x)
# run expr, keeping its warnings and messages as text
collect <- function(expr) {
  notes <- character(0)
  keep <- function(cond) notes <<- c(notes, conditionMessage(cond))
  value <- withCallingHandlers(expr,
    warning = function(w) { keep(w); invokeRestart("muffleWarning") },
    message = function(msg) { keep(msg); invokeRestart("muffleMessage") })
  list(value = value, notes = notes)
}
fit_model <- function(f) {
  if (!with_prior) return(glmer(f, data = d, family = binomial, nAGQ = 1))
  sds <- as.numeric(args[4:5])
  eval(bquote(bglmer(.(f), data = d, family = binomial, nAGQ = 1, cov.prior = NULL,
                     fixef.prior = normal(sd = c(.(sds[1]), .(sds[2]))))))
}

for (i in seq_len(nrow(models))) {
  model <- models$name[i]
  fitted <- collect(fit_model(as.formula(models$formula[i])))
  fit <- fitted$value
  notes <- fitted$notes
  b <- fixef(fit)
  add(model, "fixef", names(b), num(b))
  if (models$vcov[i] == 1) {
    v <- collect(as.matrix(vcov(fit)))
    rx <- any(grepl("falling back to var-cov estimated from RX", v$notes))
    add(model, "vcov_method", "vcov_method", if (rx) "RX" else "Hessian")
    notes <- c(notes, v$notes)
    for (j in seq_len(ncol(v$value))) {
      add(model, "vcov", rownames(v$value), num(v$value[, j]), colnames(v$value)[j])
    }
    re <- as.data.frame(ranef(fit, condVar = TRUE))
    add(model, "ranef_mode", as.character(re$grp), num(re$condval), as.character(re$term), as.character(re$grpvar))
    add(model, "ranef_sd", as.character(re$grp), num(re$condsd), as.character(re$term), as.character(re$grpvar))
  }
  vc <- as.data.frame(VarCorr(fit))
  vc$grp <- sub("\\.[0-9]+$", "", vc$grp)  # || splits unit into unit, unit.1, ...
  add(model, "varcorr", vc$grp, num(vc$sdcor), vc$var1, ifelse(is.na(vc$var2), "", vc$var2))
  ll <- logLik(fit)
  add(model, "loglik", "loglik", num(as.numeric(ll)))
  add(model, "npar", "npar", as.character(attr(ll, "df")))
  conv <- fit@optinfo$conv
  add(model, "optimizer_ok", "optimizer_ok", if (conv$opt == 0) "TRUE" else "FALSE")
  add(model, "singular", "singular", if (isSingular(fit)) "TRUE" else "FALSE")
  notes <- unique(trimws(gsub("[\r\n]+", " ", c(notes, conv$lme4$messages))))
  if (length(notes)) add(model, "message", "message", notes)
}
add(".", "version", "R", paste(R.version$major, R.version$minor, sep = "."))
add(".", "version", "lme4", as.character(packageVersion("lme4")))
if (with_prior) add(".", "version", "blme", as.character(packageVersion("blme")))
write.csv(do.call(rbind, rows), args[3], row.names = FALSE)
