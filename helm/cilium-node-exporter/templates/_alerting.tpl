{{/*
Shaping the alert pack from prometheusRule.config, as alerts/tuning.py and alerts/routing.py do for plain
files (tests/chart/test_helm_rules.py holds both to the same output): the scope label on every alert,
disabled alerts, additional and per-alert labels, annotations, severity, for and keep_firing_for.
*/}}

{{/* The scope label's value: prometheusRule.config.scopeValue, else the AlertmanagerConfig's namespace. */}}
{{- define "cne.alertScope" -}}
{{- .Values.prometheusRule.config.scopeValue | default (.Values.alertmanagerConfig.namespace | default (include "cne.namespace" .)) -}}
{{- end }}

{{/* Fails on a disabled or customRules entry that names no alert of the pack. Argument: (list config names). */}}
{{- define "cne.checkAlertNames" -}}
{{- $cfg := index . 0 }}
{{- $names := index . 1 }}
{{- range $key := list "disabled" "customRules" }}
{{- range $name, $_ := (index $cfg $key | default dict) }}
{{- if not (has $name $names) }}
{{- fail (printf "prometheusRule.config.%s: the pack has no alert %q" $key $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The alertname matcher [label, op, value] of a list of names (JSON). */}}
{{- define "cne.namesMatcher" -}}
{{- if eq (len .) 1 }}
{{- list "alertname" "=" (first .) | toJson }}
{{- else }}
{{- list "alertname" "=~" (join "|" .) | toJson }}
{{- end }}
{{- end }}

{{/* A matcher [label, op, value] as Alertmanager's label<op>"value". */}}
{{- define "cne.matcherText" -}}
{{- printf "%s%s\"%s\"" (index . 0) (index . 1) (index . 2) }}
{{- end }}

{{/* The rule groups of files/prometheus-rules.tpl.yaml shaped by prometheusRule.config (JSON). Argument:
(list $ groups). Recording rules are unchanged; a group left without rules is dropped. */}}
{{- define "cne.tunedGroups" -}}
{{- $ := index . 0 }}
{{- $cfg := $.Values.prometheusRule.config }}
{{- $disabled := $cfg.disabled | default dict }}
{{- $custom := $cfg.customRules | default dict }}
{{- $extraLabels := $cfg.additionalRuleLabels | default dict }}
{{- $extraAnnotations := $cfg.additionalRuleAnnotations | default dict }}
{{- $scopeLabel := $cfg.scopeLabel }}
{{- $scopeValue := include "cne.alertScope" $ }}
{{- $names := list }}
{{- range $g := index . 1 }}
{{- range $r := $g.rules }}
{{- if hasKey $r "alert" }}
{{- $names = append $names $r.alert }}
{{- end }}
{{- end }}
{{- end }}
{{- include "cne.checkAlertNames" (list $cfg $names) }}
{{- $groups := list }}
{{- range $g := index . 1 }}
{{- $rules := list }}
{{- range $r := $g.rules }}
{{- if not (hasKey $r "alert") }}
{{- $rules = append $rules $r }}
{{- else if not (index $disabled $r.alert) }}
{{- $c := index $custom $r.alert | default dict }}
{{- $own := $r.labels | default dict }}
{{- $labels := deepCopy $own }}
{{- range $kind, $extra := dict "additionalRuleLabels" $extraLabels (printf "customRules.%s.labels" $r.alert) ($c.labels | default dict) }}
{{- range $k, $v := $extra }}
{{- if or (hasKey $own $k) (eq $k $scopeLabel) (eq $k "alertname") }}
{{- fail (printf "prometheusRule.config.%s: %s is set by the pack on %s" $kind $k $r.alert) }}
{{- end }}
{{- $_ := set $labels $k $v }}
{{- end }}
{{- end }}
{{- with $c.severity }}
{{- $_ := set $labels "severity" . }}
{{- end }}
{{- $_ := set $labels $scopeLabel $scopeValue }}
{{- $rule := dict "alert" $r.alert "expr" $r.expr "labels" $labels }}
{{- with index $c "for" | default (index $r "for") }}
{{- $_ := set $rule "for" . }}
{{- end }}
{{- with $c.keepFiringFor | default $cfg.keepFiringFor | default (index $r "keep_firing_for") }}
{{- $_ := set $rule "keep_firing_for" . }}
{{- end }}
{{- $annotations := merge (deepCopy ($c.annotations | default dict)) (deepCopy $extraAnnotations) (deepCopy ($r.annotations | default dict)) }}
{{- if $annotations }}
{{- $_ := set $rule "annotations" $annotations }}
{{- end }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- end }}
{{- if $rules }}
{{- $groups = append $groups (set (omit $g "rules") "rules" $rules) }}
{{- end }}
{{- end }}
{{- toJson $groups }}
{{- end }}

{{/* The pack's routes and inhibitions (files/alerting.tpl.yaml) shaped by prometheusRule.config (JSON):
{alerts, receivers, route, inhibitRules}, matchers as [label, op, value]. */}}
{{- define "cne.alerting" -}}
{{- $cfg := .Values.prometheusRule.config }}
{{- $disabled := $cfg.disabled | default dict }}
{{- $text := tpl (.Files.Get "files/alerting.tpl.yaml") . }}
{{- if not (trim $text) }}
{{- fail "the chart has no files/alerting.tpl.yaml (run python -m alerts.generate)" }}
{{- end }}
{{- $ir := fromYaml $text }}
{{- include "cne.checkAlertNames" (list $cfg $ir.alerts) }}
{{- $scope := list $cfg.scopeLabel "=" (include "cne.alertScope" .) }}
{{- $names := list }}
{{- range $ir.alerts }}
{{- if not (index $disabled .) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- $route := set (deepCopy $ir.route) "matchers" (list $scope (include "cne.namesMatcher" $names | fromJsonArray)) }}
{{- $rules := list }}
{{- range $r := $ir.inhibitRules }}
{{- $out := dict "equal" $r.equal }}
{{- range $side := list "source" "target" }}
{{- $s := index $r $side }}
{{- $kept := list }}
{{- $mine := true }}
{{- range $s.alerts }}
{{- if not (index $disabled .) }}
{{- $kept = append $kept . }}
{{- end }}
{{- if not (has . $ir.alerts) }}
{{- $mine = false }}
{{- end }}
{{- end }}
{{- if $kept }}
{{- $_ := set $out $side (dict "alerts" $kept "matchers" (ternary (append $s.matchers $scope) $s.matchers $mine)) }}
{{- end }}
{{- end }}
{{- if and (hasKey $out "source") (hasKey $out "target") }}
{{- $rules = append $rules $out }}
{{- end }}
{{- end }}
{{- toJson (dict "alerts" $names "receivers" $ir.receivers "route" $route "inhibitRules" $rules) }}
{{- end }}

{{/* Inhibitions of "cne.alerting" in Alertmanager's configuration format (JSON list). */}}
{{- define "cne.plainInhibitRules" -}}
{{- $out := list }}
{{- range $r := . }}
{{- $rule := dict "equal" $r.equal }}
{{- range $side := list "source" "target" }}
{{- $s := index $r $side }}
{{- $matchers := list (include "cne.matcherText" (include "cne.namesMatcher" $s.alerts | fromJsonArray)) }}
{{- range $s.matchers }}
{{- $matchers = append $matchers (include "cne.matcherText" .) }}
{{- end }}
{{- $_ := set $rule (printf "%s_matchers" $side) $matchers }}
{{- end }}
{{- $out = append $out $rule }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* [label, op, value] matchers as AlertmanagerConfig matcher objects (JSON list). */}}
{{- define "cne.crdMatchers" -}}
{{- $out := list }}
{{- range . }}
{{- $out = append $out (dict "name" (index . 0) "matchType" (index . 1) "value" (index . 2)) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* A route of "cne.alerting" as an AlertmanagerConfig route, children included (JSON). */}}
{{- define "cne.crdRoute" -}}
{{- $route := omit . "matchers" "routes" }}
{{- with .matchers }}
{{- $_ := set $route "matchers" (include "cne.crdMatchers" . | fromJsonArray) }}
{{- end }}
{{- with .routes }}
{{- $children := list }}
{{- range . }}
{{- $children = append $children (include "cne.crdRoute" . | fromJson) }}
{{- end }}
{{- $_ := set $route "routes" $children }}
{{- end }}
{{- toJson $route }}
{{- end }}
